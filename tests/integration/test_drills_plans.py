"""Saved plans, the stale-plan drill, deletion protection and the cidr-conflict drill on the
drills' staging stack (real Terraform, real sandbox), in order:

1. a plan saved through the CLI and the stale-plan drill (plans from two real commits in a clone,
   the newer applied): the older plans refused by labkit's check and Terraform's own, an
   overwritten plan file refused;
2. a destroy refused while the load balancer's deletion protection is on;
3. the cidr-conflict drill: production planned with a range inside staging's, refused at plan.

The accidental-destroy drill and its restore-environment runbook run end to end in
test_drills_rebuild.py, on this group's stack after this module: a real `labkit stack destroy`
under a probe, the runbook's dry run, its confirmed run and a second run that finds nothing to do,
verified by the drill's steady state.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.errors import DeletionProtectedError, StalePlanError
from labkit.infra.planfile import (
    PLANS_DIR,
    check_saved_plan,
    current_state,
    read_record,
    run_saved_plan,
    sidecar_path,
)
from labkit.infra.stack import Stack
from labkit.ops import drill, probes
from labkit.ops.drills import stale_plan
from tests.conftest import BLUE_SERVES_1_0_0, DrillsStack, target_states, wait_for
from tests.workflow_commands import STACK_APPLY_PLAN, STACK_PLAN

# A drills stack of its own, on another worker than test_drills_cli.py and test_drills_state.py:
# the drills are several minutes each, and one stack for all of them would be the suite's longest chain.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]

#: The deployment every test here starts from: the fixture's, with the preview rule's defaults.
BASELINE = {**BLUE_SERVES_1_0_0, "preview_color": None}


@dataclass
class Staging:
    """The drills' staging stack, and one Stack for the module."""

    fixture: DrillsStack
    stack: Stack

    def blue_serves(self) -> bool:
        outputs = self.stack.outputs()
        states = target_states(self.fixture.target, str(outputs["blue_target_group_arn"]))
        return len(states) == 2 and set(states.values()) == {("healthy", None)}


@pytest.fixture(scope="module")
def staging(drills_stack: DrillsStack) -> Iterator[Staging]:
    """The drills' staging stack at BASELINE, blue healthy; the plans this module saves go."""
    ours = Staging(drills_stack, drills_stack.stack())
    ours.stack.apply(BASELINE)
    wait_for("blue healthy", ours.blue_serves, timeout_s=90)
    before = set(PLANS_DIR.glob("staging-*")) if PLANS_DIR.exists() else set()
    yield ours
    for path in set(PLANS_DIR.glob("staging-*")) - before:
        path.unlink(missing_ok=True)


def cli(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_1_stale_plans_are_refused_the_older_of_two_commits_and_the_cli_s_own(
    staging: Staging, tmp_path: Path
) -> None:
    """A plan saved through the CLI (as terraform.yml saves its plans), then the stale-plan drill
    (plans from two real commits in a clone, the newer applied): the drill's older plan and the
    CLI's are both refused, by labkit's check and by Terraform's own, and a plan file overwritten by
    another fails its checksum."""
    target, stack = staging.fixture.target, staging.stack
    plan_file = tmp_path / "plans" / "staging.tfplan"
    planned = STACK_PLAN.args(env="staging", plan=str(plan_file))
    code, out, exc = cli(*planned, "--var", "preview_header=X-Old")
    assert code == 0, (out, exc)
    (saved,) = [Path(line.split()[2]) for line in out.splitlines() if line.startswith("Saved plan:")]
    assert saved == plan_file.resolve() and sidecar_path(saved).is_file()
    record = read_record(saved)
    serial, lineage = current_state(stack)
    assert (record.state_serial, record.state_lineage, record.environment) == (serial, lineage, "staging")
    assert record.has_changes and record.variables["preview_header"] == "X-Old"

    facts = stale_plan.DRILL.inject(target, "staging")
    assert facts["older_commit"] != facts["newer_commit"]
    assert facts["serial_planned_against"] == serial
    assert facts["serial_after_newer_apply"] > serial
    assert facts["state_unchanged_by_refusal"] is True
    refusal = facts["refusal"]
    assert f"made from commit {facts['older_commit'][:7]}" in refusal
    assert f"now at {facts['newer_commit'][:7]}" in refusal
    moved = facts["serial_after_newer_apply"]
    assert f"serial {serial} -> {moved}" in refusal

    code, out, exc = cli(*STACK_APPLY_PLAN.args(env="staging", plan=str(saved)), "--no-wait")
    assert code != 0 and isinstance(exc, StalePlanError), (out, exc)
    assert f"serial {serial} -> {moved}" in exc.message and "labkit stack plan staging --out" in str(exc.hint)
    # Were the state to move between labkit's check and the apply, Terraform's own check refuses.
    with pytest.raises(StalePlanError, match="saved plan is stale") as raised:
        run_saved_plan(stack, saved, record)
    assert "Nothing was applied" in str(raised.value.hint)
    # A plan file overwritten by another (the seed's concurrent pushes) fails its checksum.
    shutil.copyfile(facts["newer_plan"], saved)
    with pytest.raises(StalePlanError, match="overwritten or altered"):
        check_saved_plan(stack, saved)
    assert current_state(stack) == (moved, lineage)

    # Checks no plan check wrote: the drill's own, and the steady state.
    assert stale_plan.older_plans_refused(target, "staging")[0]
    outputs = stack.outputs()
    assert outputs["deployment"]["preview_color"] == "blue"  # the newer plan's change landed
    assert outputs["preview_header"] == "X-Preview"  # the CLI's older plan's did not
    assert probes.alb_serves(target, "staging")[0]


def test_2_destroy_is_refused_while_the_load_balancer_is_deletion_protected(staging: Staging) -> None:
    stack = staging.stack
    elbv2 = staging.fixture.target.client("elbv2")
    arn = str(stack.outputs()["alb_arn"])
    resources = stack.resources()

    def protect(on: bool) -> None:
        value = "true" if on else "false"
        elbv2.modify_load_balancer_attributes(
            LoadBalancerArn=arn, Attributes=[{"Key": "deletion_protection.enabled", "Value": value}]
        )

    protect(True)
    try:
        code, out, exc = cli("stack", "destroy", "staging", "--yes")
        assert code != 0 and isinstance(exc, DeletionProtectedError), (out, exc)
        assert "Nothing was destroyed" in exc.message and "enable_deletion_protection" in str(exc.hint)
        assert stack.resources() == resources
    finally:
        protect(False)


def test_3_a_vpc_range_overlapping_staging_s_is_refused_when_production_is_planned(staging: Staging) -> None:
    target = staging.fixture.target
    production = Stack("production", target)
    assert production.state() == {}
    facts = drill.inject("cidr-conflict", target, "staging")
    assert (facts["cidr"], facts["tried"]) == ("10.20.0.0/16", "10.20.128.0/17")
    # Terraform's own message, from the root's precondition, names both environments and ranges.
    assert "production's VPC CIDR 10.20.128.0/17 overlaps staging's 10.20.0.0/16" in facts["refusal"]
    # (Developer environments made by other tests on this sandbox may be listed beside staging.)
    assert production.state() == {} and production.other_vpc_cidrs()["staging"] == "10.20.0.0/16"
    # A range that overlaps nothing plans: the refusal was the overlap, not production itself.
    assert production.plan({**BASELINE, "vpc_cidr": "10.30.0.0/16"}).count("create") > 0
    assert production.state() == {}
