"""The quota drill on the drills' staging: blue scaled one instance past the vCPU quota through a
real apply (the Spot one: staging's fleets are on spot capacity), Auto Scaling's failed launch as
AWS records it, then quota-check run with papermill as a dry run (nothing changes), confirmed (the
increase is granted, blue reaches its capacity) and again (nothing to do). Verified with reads the
runbook did not write: Service Quotas' value, the group's instances, a plan with no changes.
Staging is left as found: blue x2 on 1.0.0, the quota as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import sandbox as sandbox_service
from labkit.infra.quotas import SPOT_VCPUS
from labkit.infra.stack import Stack
from labkit.ops.drills import quota
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.target import Target
from tests.conftest import BLUE_SERVES_1_0_0, DrillsStack

# On the worker of test_drills_deploy.py and test_drills_plans.py (their drills stack): the
# drills group of test_drills_state.py, test_drills_cli.py, test_drills_drift.py and
# test_drills_compare.py is long enough.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]


@pytest.fixture()
def staging(drills_stack: DrillsStack) -> Iterator[Stack]:
    """Staging; afterwards blue x2 on 1.0.0 again and the Spot vCPU quota as it was."""
    stack = drills_stack.stack()
    target = stack.target
    value = vcpu_quota(target)
    yield stack
    if vcpu_quota(target) != value:
        sandbox_service.set_quota(target, SPOT_VCPUS.code, value)
    deployment = stack.deployment()
    if any(deployment.get(name) != value for name, value in BLUE_SERVES_1_0_0.items()):
        stack.apply(BLUE_SERVES_1_0_0)


def vcpu_quota(target: Target) -> float:
    """The standard Spot vCPU quota, which staging's spot fleets count toward."""
    client = target.client("service-quotas")
    return float(client.get_service_quota(ServiceCode="ec2", QuotaCode=SPOT_VCPUS.code)["Quota"]["Value"])


def in_service(target: Target, group: str) -> int:
    found = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return sum(i["LifecycleState"] == "InService" for i in found["AutoScalingGroups"][0]["Instances"])


def run(target: Target, tmp_path: Path, **parameters: object) -> RunbookRun:
    return run_runbook("quota-check", target, {"environment": "staging", **parameters}, out_root=tmp_path)


def test_a_fleet_past_the_vcpu_quota_fails_to_launch_and_quota_check_recovers(
    staging: Stack, tmp_path: Path
) -> None:
    target = staging.target
    facts = quota.inject(target, "staging")
    assert facts["capacity"] == facts["capacity_before"] + 1 == 3
    assert facts["quota_code"] == SPOT_VCPUS.code
    assert facts["activity"] == "Max spot instance count exceeded. Launching EC2 instance failed."
    assert in_service(target, facts["group"]) == 2
    assert not quota.fleets_at_capacity(target, "staging")[0]

    wanted = quota.DRILL.runbook_parameters(facts)
    dry = run(target, tmp_path, **wanted)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert vcpu_quota(target) == facts["value"] and in_service(target, facts["group"]) == 2

    fixed = run(target, tmp_path, dry_run=False, confirm="staging", **wanted)
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert vcpu_quota(target) == facts["value_before"]
    assert in_service(target, facts["group"]) == 3
    assert quota.fleets_at_capacity(target, "staging")[0]

    again = run(target, tmp_path, dry_run=False, confirm="staging")
    assert again.ok and again.record.outcome == "nothing-to-do", again.error

    staging.apply(BLUE_SERVES_1_0_0)  # as found: blue x2 (the quota is as it was already)
    assert in_service(target, facts["group"]) == 2
    assert not staging.plan().has_changes
