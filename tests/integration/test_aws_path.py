"""The aws path, exercised (issue 14, item 6): global, staging and production applied through
labkit with the ``aws`` target's settings, every sandbox-only setting off (the list is
:mod:`labkit.infra.sandbox_off`), then planned again with no change.

"AWS" is moto's server standing in for it (``aws_standin.py``, its own process): HTTPS with a
certificate trusted through ``AWS_CA_BUNDLE``, and every AWS client (boto3, Terraform's S3 backend,
the AWS provider) sent there by ``AWS_ENDPOINT_URL`` with ordinary environment credentials. Nothing
is overridden in the roots or in labkit: the target is ``labkit.target.aws()``, as on a real account,
so the backend gets no sandbox setting and the roots get ``require_tls`` and ``enable_budget`` on.

The applies do not wait for instance health (the roots' ``wait_for_capacity_timeout`` is ``"0"``; the
deploy controller waits, outside Terraform), so no instance needs to serve. Most of the wall time is
the AWS provider's own waits, however fast the stand-in answers: about 55 s polling until an S3
lifecycle configuration reads back steadily (global) and 60 s creating an ALB (staging, production).
So staging and production are applied beside global, as soon as its buckets exist (all they need of
it), and each environment is planned again as soon as its own apply is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from labkit.infra import sandbox_off
from labkit.infra.stack import Stack, StackNames, state_key
from labkit.infra.terraform import ApplyResult, PlanResult
from labkit.infra.tfjson import raw_state_resources
from labkit.settings import PROJECT_ROOT
from labkit.target import Target, aws
from tests.conftest import upload_artifact, wait_for

pytestmark = pytest.mark.integration

ENVIRONMENTS = ("global", "staging", "production")
#: One blue instance, green parked: the least a blue/green root applies with traffic.
DEPLOYMENT = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 1, "green_capacity": 0}


@dataclass
class AwsPath:
    target: Target
    names: StackNames
    http_endpoint: str
    applied: dict[str, ApplyResult]
    plans: dict[str, PlanResult]

    def state(self, env: str) -> dict[str, Any]:
        body = self.target.client("s3").get_object(Bucket=self.names.state_bucket, Key=state_key(env))
        return dict(json.loads(body["Body"].read()))


@pytest.fixture(scope="module")
def aws_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsPath]:
    folder = tmp_path_factory.mktemp("aws-standin")
    with (folder / "standin.log").open("wb") as log:
        standin = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.aws_standin", str(folder)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        ports = wait_for("the aws stand-in to listen", lambda: _ports(folder, standin), timeout_s=60)
        with pytest.MonkeyPatch.context() as patch:
            for var in [v for v in os.environ if v.startswith("AWS_")]:
                patch.delenv(var)
            patch.setenv("LABKIT_HOME", str(tmp_path_factory.mktemp("labkit-home")))
            patch.setenv("AWS_ENDPOINT_URL", f"https://127.0.0.1:{ports['https']}")
            patch.setenv("AWS_CA_BUNDLE", str(folder / "cert.pem"))
            patch.setenv("AWS_ACCESS_KEY_ID", "AKIAAWSPATHTEST00000")  # moto takes any key
            patch.setenv("AWS_SECRET_ACCESS_KEY", "aws-path-test")
            patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
            patch.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])))
            # labkit shares one client per (target, service): a client made earlier in this process
            # for an equal aws target would still point wherever that test's environment did.
            patch.setattr("labkit.target._CLIENTS", {})
            target = aws("us-east-1", allow_spend=True)
            built = _build(target)
            yield AwsPath(
                target=target,
                names=StackNames.for_target(target),
                http_endpoint=f"http://127.0.0.1:{ports['http']}",
                applied={env: applied for env, (applied, _) in built.items()},
                plans={env: plan for env, (_, plan) in built.items()},
            )
    finally:
        standin.terminate()
        standin.wait(timeout=30)


def _ports(folder: Path, standin: subprocess.Popen[bytes]) -> dict[str, int] | None:
    if standin.poll() is not None:
        raise AssertionError(f"The aws stand-in exited: {(folder / 'standin.log').read_text()[-2000:]}")
    path = folder / "ports.json"
    return dict(json.loads(path.read_text())) if path.exists() else None


def _stack(env: str, target: Target) -> Stack:
    return Stack(env, target, reporter=None)


def _build(target: Target) -> dict[str, tuple[ApplyResult, PlanResult]]:
    """Each environment applied, then planned again: global first, staging and production beside it
    as soon as its state and artifact buckets and the project's key exist (all they need of it:
    staging's alarm topic is encrypted with that key, which it finds by its alias)."""
    names = StackNames.for_target(target)
    s3 = target.client("s3")
    kms = target.client("kms")

    def apply_then_plan(env: str, variables: dict[str, Any] | None) -> tuple[ApplyResult, PlanResult]:
        stack = _stack(env, target)
        return stack.apply(variables), stack.plan()

    def buckets_exist() -> bool | None:
        if runs["global"].done():
            runs["global"].result()  # raises what global's apply raised
        listed = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        aliases = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
        return (
            {names.state_bucket, names.artifact_bucket} <= listed and f"alias/{names.state_bucket}" in aliases
        ) or None

    with ThreadPoolExecutor(len(ENVIRONMENTS)) as pool:
        runs: dict[str, Future[tuple[ApplyResult, PlanResult]]] = {
            "global": pool.submit(apply_then_plan, "global", None)
        }
        wait_for("global's state and artifact buckets and the project's key", buckets_exist, timeout_s=120)
        # A staging or production apply refuses a release that is not in the artifact bucket.
        upload_artifact(target, names.artifact_bucket, "1.0.0", Path(os.environ["LABKIT_HOME"]) / "releases")
        for env in ENVIRONMENTS[1:]:
            runs[env] = pool.submit(apply_then_plan, env, DEPLOYMENT)
        return {env: run.result() for env, run in runs.items()}


def test_each_root_applies_with_the_aws_settings_then_plans_no_change(aws_path: AwsPath) -> None:
    for env in ENVIRONMENTS:
        assert aws_path.applied[env].added > 0, env
        plan = aws_path.plans[env]
        assert not plan.has_changes, f"{env}: {plan.summary()} {[c.address for c in plan.changes]}"
    # The aws values reached the roots: what the sandbox turns off is in the states.
    addresses = {env: {r.address for r in raw_state_resources(aws_path.state(env))} for env in ENVIRONMENTS}
    for bucket in ("module.state_backend.module.hardening", "module.artifact_hardening"):
        assert f"{bucket}.aws_s3_bucket_policy.tls_only[0]" in addresses["global"]
    for env in ("staging", "production"):
        assert "module.environment.module.monitoring.aws_budgets_budget.monthly[0]" in addresses[env]
        assert aws_path.state(env)["outputs"]["deployment"]["value"]["blue_capacity"] == 1
    # ...and nothing of the sandbox's reached the backend.
    backend = _stack("staging", aws_path.target).backend_config()
    assert not set(backend) & set(sandbox_off.SANDBOX_OFF)


def test_the_buckets_refuse_plain_http_as_their_tls_only_policy_says(aws_path: AwsPath) -> None:
    s3 = aws_path.target.client("s3")
    for bucket in (aws_path.names.state_bucket, aws_path.names.artifact_bucket):
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    key = state_key("staging")
    assert s3.head_object(Bucket=aws_path.names.state_bucket, Key=key)["ContentLength"] > 0
    plain = boto3.client("s3", endpoint_url=aws_path.http_endpoint, region_name="us-east-1")
    with pytest.raises(ClientError) as refused:
        plain.head_object(Bucket=aws_path.names.state_bucket, Key=key)
    assert refused.value.response["Error"]["Code"] == "403"


def test_each_environment_has_its_budget_notifying_its_alarm_topic(aws_path: AwsPath) -> None:
    budgets = aws_path.target.client("budgets")
    account = aws_path.names.account_id
    for env, limit in (("staging", 50), ("production", 150)):
        name = f"bglab-{env}-monthly"
        budget = budgets.describe_budget(AccountId=account, BudgetName=name)["Budget"]
        assert float(budget["BudgetLimit"]["Amount"]) == limit and budget["TimeUnit"] == "MONTHLY"
        topic = aws_path.state(env)["outputs"]["alarm_topic_arn"]["value"]
        notifications = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)
        assert sorted(n["Threshold"] for n in notifications["Notifications"]) == [80, 100]
        for notification in notifications["Notifications"]:
            subscribers = budgets.describe_subscribers_for_notification(
                AccountId=account, BudgetName=name, Notification=notification
            )["Subscribers"]
            assert subscribers == [{"SubscriptionType": "SNS", "Address": topic}]
