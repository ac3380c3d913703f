"""The deploy-permission-lost drill on the drills' stack: the deploy role loses
``cloudwatch:GetMetricStatistics`` by a hand edit of its policy, a deploy run as that role with IAM
enforced stops at the analysis gate's first metrics read and rolls back, and diagnose-access-denied,
run with papermill, reads the refusal from the deployment ledger, names the action and applies
global's code for the role. Verified with what the runbook did not write: the listener's weights and
the ALB's answers after the rollback, the role's policy read back from IAM and judged by
labkit.identity.policy, and the analysis's call made as the role.

global is applied with a repository as in test_drills_identity.py (the same variables, so either
file's apply finds the other's work done). The sandbox enforces IAM (its default; the fixture makes
sure and puts back what it found). Staging is left serving blue 1.0.0, global as its code says.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit import sandbox
from labkit.deploy import Controller
from labkit.deploy.strategy import canary
from labkit.identity.policy import Decision, Request, evaluate
from labkit.infra.stack import Stack
from labkit.lab.ci_identity import github_variables
from labkit.ops.drills import deploy_permission_lost
from labkit.ops.drills.oidc_misconfigured import deploy_job_assumes, deploy_job_credentials
from labkit.ops.execute import run_runbook
from labkit.target import Target
from tests.conftest import DrillsStack
from tests.integration.test_drills_deploy import listener_weights

pytestmark = pytest.mark.integration

SUBJECT = "repo:acme/bluegreen-lab:environment:staging"
ACTION = "cloudwatch:GetMetricStatistics"
#: One step to all traffic: the gate's first read is the call the role lost (test_identity_deploy.py's).
ONE_STEP = canary([100], bake_s=3, health_timeout_s=60, scale_down_delay_s=2)


@pytest.fixture(scope="module")
def staging(drills_stack: DrillsStack) -> Iterator[DrillsStack]:
    """The drills' staging with blue serving 1.0.0, global with the deploy role, IAM enforced;
    afterwards enforcement as found and, should a test fail halfway, the role's policies as coded."""
    target = drills_stack.target
    global_stack = Stack("global", target)
    global_stack.apply(github_variables(target, SUBJECT))
    drills_stack.blue_serves_1_0_0()
    previous = sandbox.set_iam_enforced(target, True)
    try:
        yield drills_stack
    finally:
        sandbox.set_iam_enforced(target, previous)
        if not deploy_permission_lost.policy_as_applied(target, "staging")[0]:
            global_stack.apply(targets=["module.github_oidc"])


def role_allows(target: Target, role: str, policy: str, action: str) -> bool:
    """The role's inline ``policy`` read back from IAM allows ``action`` in the target's region."""
    document = target.client("iam").get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    request = Request(action, None, {"aws:requestedregion": [target.region]})
    return evaluate([document], request) is Decision.ALLOWED


def test_a_lost_permission_stops_the_deploy_and_diagnose_access_denied_names_it(
    staging: DrillsStack, tmp_path: Path
) -> None:
    target = staging.target
    facts = deploy_permission_lost.inject(target, "staging")
    role = facts["role"]
    assert (facts["action"], facts["policy"], facts["statement"]) == (ACTION, "read-stack", "DescribeStack")
    assert f"is not authorized to perform: {ACTION}" in facts["refused"]
    assert not role_allows(target, role, "read-stack", ACTION)
    assert role_allows(target, role, "read-stack", "cloudwatch:DescribeAlarms")  # the rest of it stays

    as_role = target.as_identity(deploy_job_credentials(target).as_target_credentials())
    record = Controller("staging", as_role, say=print).deploy("1.1.0", strategy=ONE_STEP, preview_requests=0)
    assert record.status == "rolled_back", record
    assert "when calling the GetMetricStatistics operation" in str(record.reason)
    assert f"is not authorized to perform: {ACTION}" in str(record.reason)
    stack = staging.stack()
    assert listener_weights(staging, stack) == {"blue": 100, "green": 0}
    for _ in range(3):
        with urllib.request.urlopen(staging.url, timeout=5) as response:
            assert json.loads(response.read())["version"] == "1.0.0"
    broken = target.client("iam").get_role_policy(RoleName=role, PolicyName="read-stack")["PolicyDocument"]

    parameters = {"environment": "global", "deploy_environment": "staging"}  # the reason, from the ledger
    dry = run_runbook("diagnose-access-denied", target, parameters, out_root=tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    found, judged = (s.detail for s in dry.record.steps if s.section == "diagnose")
    assert f"refused {ACTION}" in found and f"deployment {record.id} of staging (rolled_back)" in found
    assert judged.startswith(
        f"{ACTION} is denied to role {role}: no statement of its policies allows it; global's code grants it "
        "in statement DescribeStack of read-stack: the policy in IAM was changed by hand"
    ), judged
    iam = target.client("iam")
    assert iam.get_role_policy(RoleName=role, PolicyName="read-stack")["PolicyDocument"] == broken

    acting = {**parameters, "dry_run": False, "confirm": "global"}
    fixed = run_runbook("diagnose-access-denied", target, acting, out_root=tmp_path)
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert role_allows(target, role, "read-stack", ACTION)
    now = datetime.now(UTC).replace(microsecond=0)
    as_role.client("cloudwatch").get_metric_statistics(  # the analysis's call, as the role: allowed
        Namespace="AWS/ApplicationELB", MetricName="RequestCount", Statistics=["Sum"], Period=60,
        StartTime=now - timedelta(minutes=5), EndTime=now,
    )  # fmt: skip
    assert deploy_permission_lost.policy_as_applied(target, "staging")[0]
    assert deploy_job_assumes(target)[0]
