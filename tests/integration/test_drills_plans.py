"""Saved plans, the stale-plan drill, deletion protection and the accidental-destroy drill on the
drills' staging stack (real Terraform, real sandbox), in order:

1. a plan saved through the CLI and the stale-plan drill (plans from two real commits in a clone,
   the newer applied): the older plans refused by labkit's check and Terraform's own, an
   overwritten plan file refused;
2. a destroy refused while the load balancer's deletion protection is on;
3. accidental-destroy: a real `labkit stack destroy` process while a probe runs, the
   restore-environment runbook headless (dry run, then confirmed, then again: nothing to do), and
   checks the runbook did not write.

The last test rebuilds staging: its load balancer, target groups and ASGs are new resources, which
the fixture's ``outputs`` and ``url`` read afresh for the tests that come after it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.deploy.probe import Probe
from labkit.errors import DeletionProtectedError, StalePlanError
from labkit.infra.planfile import (
    PLANS_DIR,
    check_saved_plan,
    current_state,
    read_record,
    run_saved_plan,
)
from labkit.infra.stack import Stack
from labkit.ops import probes
from labkit.ops.drills import accidental_destroy, stale_plan
from labkit.ops.execute import run_runbook
from tests.conftest import BLUE_SERVES_1_0_0, DrillsStack, target_states, wait_for

pytestmark = pytest.mark.integration

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


def test_1_stale_plans_are_refused_the_older_of_two_commits_and_the_cli_s_own(staging: Staging) -> None:
    """A plan saved through the CLI, then the stale-plan drill (plans from two real commits in a
    clone, the newer applied): the drill's older plan and the CLI's are both refused, by labkit's
    check and by Terraform's own, and a plan file overwritten by another fails its checksum."""
    target, stack = staging.fixture.target, staging.stack
    code, out, exc = cli("stack", "plan", "staging", "--var", "preview_header=X-Old", "--out")
    assert code == 0, (out, exc)
    (saved,) = [Path(line.split()[2]) for line in out.splitlines() if line.startswith("Saved plan:")]
    assert saved.parent == PLANS_DIR and saved.name.startswith("staging-")
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

    code, out, exc = cli("stack", "apply", "staging", "--plan", str(saved), "--no-wait")
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


def test_3_accidental_destroy_is_restored_by_the_runbook_and_verified_independently(
    staging: Staging, tmp_path: Path
) -> None:
    target, stack = staging.fixture.target, staging.stack
    # Serving now: BASELINE's deployment with the stale-plan drill's preview_color.
    served = Probe(staging.fixture.url, rate=20, max_duration=600).start()
    time.sleep(1)

    started = time.monotonic()
    facts = accidental_destroy.DRILL.inject(target, "staging")
    destroyed = time.monotonic()
    assert facts["resources_before"] > 20 and facts["resources_after"] == 0
    assert {k: facts["deployment_before"][k] for k in BLUE_SERVES_1_0_0} == BLUE_SERVES_1_0_0
    preview_before = facts["deployment_before"]["preview_color"]
    time.sleep(1)
    served.stop()
    old = served.results()
    assert old["ok"].any() and not old["ok"].iloc[-5:].any()  # it served, then it did not
    assert stack.outputs() == {}

    serial = current_state(stack)
    dry = run_runbook("restore-environment", target, {"environment": "staging"}, out_root=tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert [s.outcome for s in dry.record.steps if s.section == "act"] == ["would"]
    assert current_state(stack) == serial and stack.resources() == []  # the dry run changed nothing

    done = run_runbook(
        "restore-environment",
        target,
        {"environment": "staging", "dry_run": False, "confirm": "staging"},
        out_root=tmp_path,
    )
    assert done.ok and done.record.outcome == "recovered", done.error
    (rebuild,) = [s for s in done.record.steps if s.section == "act"]
    print(
        f"\naccidental-destroy: the destroy took {destroyed - started:.1f} s; the rebuild (apply and "
        f"fleets healthy) {rebuild.duration_s:.1f} s; from the destroy's end to the runbook's end "
        f"(dry run, confirmed run, its Verify) {time.monotonic() - destroyed:.1f} s"
    )

    # Checks the runbook did not write.
    outputs = stack.outputs()
    after = Probe(staging.fixture.url, rate=20, duration=2).start()
    after.wait(timeout=30)
    frame = after.results()
    assert len(frame) >= 30 and frame["ok"].all()
    assert set(zip(frame["color"], frame["version"], strict=True)) == {("blue", "1.0.0")}
    ok, detail = accidental_destroy.serves_what_served_before(target, "staging")  # weights, versions
    assert ok, detail
    assert probes.no_change_plan(target, "staging") == (True, "no changes")
    assert stack.deployment()["preview_color"] == preview_before == "blue"

    again = run_runbook(
        "restore-environment",
        target,
        {"environment": "staging", "dry_run": False, "confirm": "staging"},
        out_root=tmp_path,
    )
    assert again.ok and again.record.outcome == "nothing-to-do", again.error
    assert not [s for s in again.record.steps if s.section == "act"]
