"""global, then staging, applied with real Terraform through labkit.infra.stack against moto's server.

One stack for the module (the ALB alone takes 60 s to create): the tests run in order on it, from
the bootstrap of global to the teardown that removes the state bucket. State lives in the emulated
S3 backend with locking, as it does on AWS.

No data plane runs here (no app processes, no load balancer): with labkit's moto mends applied,
every registered target reports healthy, as stock moto does, so the ASGs' capacity waits pass.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from labkit.cli import app
from labkit.errors import StackError, StateLockedError, TerraformError
from labkit.infra.stack import Stack, StackNames, state_key
from labkit.infra.terraform import Terraform
from labkit.sandbox.server.mends import apply_mends
from labkit.sandbox.server.topology import TargetHealthReport
from labkit.settings import terraform_dir
from labkit.target import Target, sandbox
from tests.conftest import free_port, upload_artifact

pytestmark = pytest.mark.integration

FIRST_DEPLOYMENT = {
    "blue_version": "1.0.0",
    "green_version": "1.0.0",
    "blue_capacity": 2,
    "green_capacity": 1,
}
GITHUB = {"github_repository": "acme/bluegreen-lab"}
PREFIX = "bglab-staging"


@dataclass
class Lab:
    target: Target
    endpoint: str
    home: Path
    names: StackNames
    lines: list[str]
    stacks: dict[str, Stack] = field(default_factory=dict)

    def stack(self, env: str) -> Stack:
        """One Stack per environment for the module, so each runs `terraform init` once."""
        if env not in self.stacks:
            self.stacks[env] = Stack(env, self.target, reporter=self.lines.append)
        return self.stacks[env]

    def state(self, env: str) -> dict[str, object]:
        body = self.target.client("s3").get_object(Bucket=self.names.state_bucket, Key=state_key(env))
        return dict(json.loads(body["Body"].read()))


def every_target_healthy(target_group_arn: str, target_id: str) -> TargetHealthReport:
    return TargetHealthReport("healthy")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from moto.server import ThreadedMotoServer

    apply_mends(every_target_healthy)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    home = tmp_path_factory.mktemp("labkit-home")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LABKIT_HOME", str(home))
            endpoint = f"http://127.0.0.1:{port}"
            target = sandbox(endpoint)
            names = StackNames.for_target(target)
            # moto's backends are global to this process: tests on this worker's session-wide
            # moto_endpoint (test_restore_states, test_app_gunicorn) may have left buckets behind,
            # and this module bootstraps global into an empty account.
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
            s3 = target.client("s3")
            assert names.state_bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
            lab = Lab(target=target, endpoint=endpoint, home=home, names=names, lines=[])
            lab.stack("global").apply(GITHUB)
            # staging refuses a release that is not in the artifact bucket.
            upload_artifact(target, names.artifact_bucket, "1.0.0", home / "releases")
            lab.stack("staging").apply(FIRST_DEPLOYMENT)
            yield lab
            _clean_up_after_a_failure(lab)
    finally:
        server.stop()


def _clean_up_after_a_failure(lab: Lab) -> None:
    """moto's backends outlive the server in this process: leave nothing for other tests."""
    if lab.names.state_bucket not in [b["Name"] for b in lab.target.client("s3").list_buckets()["Buckets"]]:
        return
    lab.stack("staging").destroy()
    lab.stack("global").teardown(confirm="global")


def test_global_bootstrapped_its_state_into_the_bucket_it_created(lab: Lab) -> None:
    state = lab.state("global")
    addresses = {f"{r.get('module', '')}.{r['type']}.{r['name']}".lstrip(".") for r in state["resources"]}  # type: ignore[attr-defined]
    assert "module.state_backend.aws_s3_bucket.state" in addresses
    assert "aws_dynamodb_table.ledger" in addresses
    # The local bootstrap state and the copy it ran in are gone; the source tree was never written.
    assert not (lab.home / "terraform" / "sandbox" / "global" / "bootstrap.tfstate").exists()
    assert not (lab.home / "terraform" / "sandbox" / "global" / "bootstrap-src").exists()
    assert not list((terraform_dir() / "environments" / "global").glob("*_override.tf"))
    assert any("migrating state into s3://" in line for line in lab.lines)

    outputs = lab.stack("global").outputs()
    assert outputs["state_bucket"] == lab.names.state_bucket
    assert outputs["artifact_bucket"] == lab.names.artifact_bucket
    assert outputs["lock_table"] == lab.names.lock_table
    assert outputs["kms_key_arn"].startswith("arn:aws:kms:us-east-1:")
    assert outputs["github_deploy_role_arn"].endswith(":role/bglab-staging-deploy")

    s3 = lab.target.client("s3")
    bucket = lab.names.state_bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())

    ledger = lab.target.client("dynamodb").describe_table(TableName=outputs["ledger_table"])["Table"]
    assert {(k["AttributeName"], k["KeyType"]) for k in ledger["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in ledger["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
    }
    assert ledger["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_staging_runs_in_the_s3_backend_and_its_fleets_name_their_release(lab: Lab) -> None:
    state = lab.state("staging")
    assert len(state["resources"]) > 30  # type: ignore[arg-type]
    outputs = lab.stack("staging").outputs()
    for name in (
        "alb_dns_name",
        "listener_arn",
        "blue_target_group_arn",
        "green_target_group_arn",
        "blue_asg_name",
        "green_asg_name",
        "artifact_bucket",
        "deployment",
    ):
        assert outputs.get(name), f"staging has no output {name}"
    assert outputs["blue_asg_name"] == "bglab-staging-blue-1.0.0"

    elbv2 = lab.target.client("elbv2")
    assert _weights(lab, outputs) == {"blue": 100, "green": 0}
    group = elbv2.describe_target_groups(TargetGroupArns=[outputs["blue_target_group_arn"]])["TargetGroups"][
        0
    ]
    assert (group["Port"], group["HealthCheckPath"], group["HealthCheckIntervalSeconds"]) == (
        8080,
        "/health/ready",
        5,
    )

    # The launch template's user data names the release exactly as the sandbox reads it.
    ec2 = lab.target.client("ec2")
    version = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"{PREFIX}-green", Versions=["$Latest"]
    )
    data = version["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    lines = base64.b64decode(data["UserData"]).decode().splitlines()[:8]
    assert f'ARTIFACT_URI="s3://{lab.names.artifact_bucket}/releases/1.0.0/release.tar.gz"' in lines
    assert 'APP_COLOR="green"' in lines and 'APP_VERSION="1.0.0"' in lines
    assert data["MetadataOptions"]["HttpTokens"] == "required"

    asg = lab.target.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["green_asg_name"]]
    )
    assert len(asg["AutoScalingGroups"][0]["Instances"]) == 1


def test_backend_settings_for_the_sandbox_and_each_locking_mode(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lab.stack("staging").backend_config()
    assert config == {
        "bucket": lab.names.state_bucket,
        "key": "staging/terraform.tfstate",
        "region": "us-east-1",
        "use_lockfile": "true",  # Terraform 1.11 on this machine: S3-native locking
        "use_path_style": "true",
        "skip_credentials_validation": "true",
        "skip_requesting_account_id": "true",
        "skip_metadata_api_check": "true",
    }
    monkeypatch.setattr("labkit.infra.stack.terraform_version", lambda: "1.9.8")
    older = lab.stack("staging").backend_config()
    assert older["dynamodb_table"] == lab.names.lock_table and "use_lockfile" not in older
    # The data dirs are per target and environment, under LABKIT_HOME.
    assert (
        lab.stack("staging").terraform.data_dir == lab.home / "terraform" / "sandbox" / "staging" / "tfdata"
    )


def test_a_held_state_lock_stops_another_run(lab: Lab) -> None:
    s3 = lab.target.client("s3")
    lock_key = state_key("staging") + ".tflock"
    info = {
        "ID": "d3adb33f-0000-0000-0000-000000000000",
        "Operation": "OperationTypeApply",
        "Who": "someone@elsewhere",
        "Version": "1.11.4",
        "Created": datetime.now(UTC).isoformat(),
        "Path": f"{lab.names.state_bucket}/{state_key('staging')}",
        "Info": "",
    }
    s3.put_object(Bucket=lab.names.state_bucket, Key=lock_key, Body=json.dumps(info).encode())
    try:
        with pytest.raises(StateLockedError) as raised:
            lab.stack("staging").plan({"green_weight": 10})
        assert "someone@elsewhere" in str(raised.value)
    finally:
        s3.delete_object(Bucket=lab.names.state_bucket, Key=lock_key)


def test_a_following_plan_shows_no_changes(lab: Lab) -> None:
    plan = lab.stack("staging").plan()
    assert plan.changes == [], [(c.address, c.action) for c in plan.changes]
    assert plan.exit_code == 0


def test_green_weight_10_changes_only_the_listener(lab: Lab) -> None:
    staging = lab.stack("staging")
    plan = staging.plan({"green_weight": 10})
    listener = "module.environment.module.alb.aws_lb_listener.http"
    assert [(c.address, c.action) for c in plan.changes] == [(listener, "update")]

    result = staging.apply({"green_weight": 10})
    assert (result.added, result.changed, result.removed) == (0, 1, 0)
    assert _weights(lab, result.outputs) == {"blue": 90, "green": 10}
    # The outputs the apply reported, and those read from the state object, are Terraform's own.
    assert result.outputs == staging.outputs() == staging.terraform.output()
    # The step is recorded in state, and the next apply starts from it (the next test relies on it).
    assert staging.deployment()["green_weight"] == 10


def test_traffic_to_a_color_without_instances_is_refused_and_changes_nothing(lab: Lab) -> None:
    staging = lab.stack("staging")
    with pytest.raises(TerraformError) as raised:
        staging.apply({"green_capacity": 0})  # green_weight 10 carries over from the last apply
    assert "green receives 10% of traffic but green_capacity is 0" in str(raised.value)
    outputs = staging.outputs()
    assert _weights(lab, outputs) == {"blue": 90, "green": 10}
    asg = lab.target.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["green_asg_name"]]
    )
    assert asg["AutoScalingGroups"][0]["DesiredCapacity"] == 1


def test_labkit_stack_output_prints_every_output(lab: Lab) -> None:
    result = CliRunner().invoke(app, ["--endpoint-url", lab.endpoint, "stack", "output", "staging"])
    assert result.exit_code == 0, result.output
    printed = {line.split(" = ", 1)[0] for line in result.output.splitlines() if " = " in line}
    assert printed == set(lab.stack("staging").outputs())
    assert any(line.startswith("alb_dns_name = bglab-staging-") for line in result.output.splitlines())


def test_the_state_bucket_refuses_destruction_outside_the_teardown(lab: Lab) -> None:
    before = lab.state("global")
    with pytest.raises(StackError, match="Refusing to destroy global"):
        lab.stack("global").destroy()

    # A plain `terraform destroy` of global, with its real backend, is refused by prevent_destroy.
    plain = Terraform(
        terraform_dir() / "environments" / "global",
        target=lab.target,
        data_dir=lab.home / "plain-terraform",
        reporter=lab.lines.append,
    )
    global_stack = lab.stack("global")
    plain.init(backend_config=global_stack.backend_config())
    with pytest.raises(TerraformError, match="prevent_destroy"):
        plain.destroy(variables=global_stack.variables(GITHUB))

    # The teardown itself refuses while staging's state still lists resources.
    with pytest.raises(StackError, match="staging still manages"):
        lab.stack("global").teardown(confirm="global")

    assert lab.state("global")["serial"] == before["serial"], "nothing was destroyed"
    lab.target.client("s3").head_bucket(Bucket=lab.names.state_bucket)


def test_destroying_staging_leaves_none_of_its_resources(lab: Lab) -> None:
    staging = lab.stack("staging")
    result = staging.destroy()
    assert result.removed > 30
    assert staging.terraform.state_list() == []

    t = lab.target
    elbv2, ec2, autoscaling = t.client("elbv2"), t.client("ec2"), t.client("autoscaling")
    assert not [
        lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["LoadBalancerName"] == PREFIX
    ]
    assert not [
        g for g in elbv2.describe_target_groups()["TargetGroups"] if g["TargetGroupName"].startswith(PREFIX)
    ]
    assert not [
        g
        for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        if g["AutoScalingGroupName"].startswith(PREFIX)
    ]
    assert not [
        lt
        for lt in ec2.describe_launch_templates()["LaunchTemplates"]
        if lt["LaunchTemplateName"].startswith(PREFIX)
    ]
    staging_tags = [
        {"Name": "tag:Project", "Values": ["bglab"]},
        {"Name": "tag:Environment", "Values": ["staging"]},
    ]
    assert ec2.describe_vpcs(Filters=staging_tags)["Vpcs"] == []
    assert not [
        g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith(PREFIX)
    ]
    instances = [
        i for r in ec2.describe_instances(Filters=staging_tags)["Reservations"] for i in r["Instances"]
    ]
    assert instances and {i["State"]["Name"] for i in instances} == {"terminated"}

    cloudwatch = t.client("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"] == []
    assert not [d for d in cloudwatch.list_dashboards()["DashboardEntries"] if d["DashboardName"] == PREFIX]
    assert not [topic for topic in t.client("sns").list_topics()["Topics"] if PREFIX in topic["TopicArn"]]
    iam = t.client("iam")
    assert not [
        r for r in iam.list_roles()["Roles"] if r["RoleName"] in (f"{PREFIX}-blue", f"{PREFIX}-green")
    ]
    assert not [
        p
        for p in iam.list_instance_profiles()["InstanceProfiles"]
        if p["InstanceProfileName"].startswith(PREFIX)
    ]
    assert not [
        a for a in t.client("kms").list_aliases()["Aliases"] if a["AliasName"].startswith(f"alias/{PREFIX}")
    ]


def test_the_teardown_removes_global_and_its_state_bucket(lab: Lab) -> None:
    lab.stack("global").teardown(confirm="global")

    t = lab.target
    buckets = [b["Name"] for b in t.client("s3").list_buckets()["Buckets"]]
    assert lab.names.state_bucket not in buckets and lab.names.artifact_bucket not in buckets
    tables = t.client("dynamodb").list_tables()["TableNames"]
    assert lab.names.lock_table not in tables and lab.names.ledger_table not in tables
    assert not [r for r in t.client("iam").list_roles()["Roles"] if r["RoleName"] == "bglab-staging-deploy"]
    assert t.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    with pytest.raises(ClientError):
        t.client("s3").head_bucket(Bucket=lab.names.state_bucket)
    assert not (lab.home / "terraform" / "sandbox" / "global").exists()


def _weights(lab: Lab, outputs: dict[str, object]) -> dict[str, int]:
    listener = lab.target.client("elbv2").describe_listeners(ListenerArns=[outputs["listener_arn"]])[
        "Listeners"
    ][0]
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    by_arn = {g["TargetGroupArn"]: g["Weight"] for g in groups}
    return {
        "blue": by_arn[outputs["blue_target_group_arn"]],
        "green": by_arn[outputs["green_target_group_arn"]],
    }
