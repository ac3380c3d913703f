"""Saved plans, the stale-plan drill, deletion protection and the accidental-destroy drill on the
session's staging stack (real Terraform, real sandbox), in order:

1. two saved plans through the CLI: the newer applied, the older refused (labkit's check and
   Terraform's own), an overwritten plan file refused;
2. the stale-plan drill: plans from two real commits in a clone;
3. a destroy refused while the load balancer's deletion protection is on;
4. accidental-destroy: a real `labkit stack destroy` process while a probe runs, the
   restore-environment runbook headless (dry run, then confirmed, then again: nothing to do), and
   checks the runbook did not write.

The last test rebuilds staging: its load balancer, target groups and ASGs are new resources, so it
writes the new outputs into the session fixture's ``outputs`` for the tests that come after it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
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
    sidecar_path,
)
from labkit.infra.stack import Stack
from labkit.ops import probes
from labkit.ops.drills import accidental_destroy, stale_plan
from labkit.ops.execute import run_runbook
from labkit.ops.restore import listener_weights
from tests.conftest import BLUE_SERVES_1_0_0, StagingStack, target_states, wait_for

pytestmark = pytest.mark.integration

#: The deployment every test here starts from: the fixture's, with the preview rule's defaults.
BASELINE = {**BLUE_SERVES_1_0_0, "preview_color": None}


def blue_serves(staging: StagingStack) -> bool:
    outputs = Stack("staging", staging.target, reporter=None).outputs()
    states = target_states(staging.target, str(outputs["blue_target_group_arn"]))
    return len(states) == 2 and set(states.values()) == {("healthy", None)}


@pytest.fixture(scope="module")
def staging(staging_stack: StagingStack) -> Iterator[StagingStack]:
    """The session's staging stack at BASELINE, blue healthy; the plans this module saves go."""
    Stack("staging", staging_stack.target).apply(BASELINE)
    wait_for("blue healthy", lambda: blue_serves(staging_stack), timeout_s=90)
    before = set(PLANS_DIR.glob("staging-*")) if PLANS_DIR.exists() else set()
    yield staging_stack
    for path in set(PLANS_DIR.glob("staging-*")) - before:
        path.unlink(missing_ok=True)


def cli(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_1_the_older_of_two_saved_plans_is_refused_after_the_newer_moved_the_state(
    staging: StagingStack, tmp_path: Path
) -> None:
    stack = Stack("staging", staging.target, reporter=None)
    code, out, exc = cli("stack", "plan", "staging", "--var", "preview_color=blue", "--out")
    assert code == 0, (out, exc)
    (older,) = [Path(line.split()[2]) for line in out.splitlines() if line.startswith("Saved plan:")]
    assert older.parent == PLANS_DIR and older.name.startswith("staging-")
    record = read_record(older)
    serial, lineage = current_state(stack)
    assert (record.state_serial, record.state_lineage, record.environment) == (serial, lineage, "staging")
    assert record.has_changes and record.variables["preview_color"] == "blue"

    newer = tmp_path / "newer.tfplan"
    code, out, exc = cli(
        "stack", "plan", "staging", "--var", "preview_header=X-Other", "--out-file", str(newer)
    )
    assert code == 0 and sidecar_path(newer).exists(), (out, exc)
    code, out, exc = cli("stack", "apply", "staging", "--plan", str(newer), "--no-wait")
    assert code == 0, (out, exc)
    moved, _ = current_state(stack)
    assert moved > serial

    code, out, exc = cli("stack", "apply", "staging", "--plan", str(older), "--no-wait")
    assert code != 0 and isinstance(exc, StalePlanError)
    assert f"serial {serial} -> {moved}" in exc.message and "labkit stack plan staging --out" in str(exc.hint)
    assert current_state(stack) == (moved, lineage)

    # Were the state to move between labkit's check and the apply, Terraform's own check refuses.
    with pytest.raises(StalePlanError, match="saved plan is stale") as raised:
        run_saved_plan(stack, older, record)
    assert "Nothing was applied" in str(raised.value.hint)
    assert current_state(stack) == (moved, lineage)

    # A plan file overwritten by another (the seed's concurrent pushes) fails its checksum.
    shutil.copyfile(newer, older)
    with pytest.raises(StalePlanError, match="overwritten or altered"):
        check_saved_plan(stack, older)


def test_2_stale_plan_drill_plans_from_two_commits_and_refuses_the_older(staging: StagingStack) -> None:
    stack = Stack("staging", staging.target, reporter=None)
    facts = stale_plan.DRILL.inject(staging.target, "staging")
    assert facts["older_commit"] != facts["newer_commit"]
    assert facts["serial_after_newer_apply"] > facts["serial_planned_against"]
    assert facts["state_unchanged_by_refusal"] is True
    refusal = facts["refusal"]
    assert f"made from commit {facts['older_commit'][:7]}" in refusal
    assert f"now at {facts['newer_commit'][:7]}" in refusal
    assert f"serial {facts['serial_planned_against']} -> {facts['serial_after_newer_apply']}" in refusal
    # Checks no plan check wrote: the drill's own, and the steady state.
    assert stale_plan.older_plans_refused(staging.target, "staging")[0]
    assert probes.alb_serves(staging.target, "staging")[0]
    outputs = stack.outputs()
    assert outputs["deployment"]["preview_color"] is None  # the older plan's change never landed
    assert outputs["preview_header"] == "X-Canary"  # the newer plan's did


def test_3_destroy_is_refused_while_the_load_balancer_is_deletion_protected(staging: StagingStack) -> None:
    stack = Stack("staging", staging.target, reporter=None)
    elbv2 = staging.target.client("elbv2")
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


def test_4_accidental_destroy_is_restored_by_the_runbook_and_verified_independently(
    staging: StagingStack, tmp_path: Path
) -> None:
    target = staging.target
    stack = Stack("staging", target, reporter=None)
    stack.apply(BASELINE)  # undo the stale-plan drill's changes: the deployment to restore is BASELINE
    wait_for("blue healthy", lambda: blue_serves(staging), timeout_s=90)
    served = Probe(staging.url, rate=20, max_duration=600).start()
    time.sleep(1)

    started = time.monotonic()
    facts = accidental_destroy.DRILL.inject(target, "staging")
    destroyed = time.monotonic()
    assert facts["resources_before"] > 20 and facts["resources_after"] == 0
    assert facts["deployment_before"]["blue_version"] == "1.0.0"
    time.sleep(1)
    served.stop()
    old = served.results()
    assert old["ok"].any() and not old["ok"].iloc[-5:].any()  # it served, then it did not
    assert not probes.alb_serves(target, "staging", attempts=1)[0]

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
    restored = time.monotonic()
    assert done.ok and done.record.outcome == "recovered", done.error
    print(
        f"\naccidental-destroy: destroy took {destroyed - started:.1f} s; service restored "
        f"{restored - destroyed:.1f} s after it (runbook dry run included), "
        f"{restored - started:.1f} s after the destroy began"
    )

    # Checks the runbook did not write.
    outputs = stack.outputs()
    staging.outputs.update(outputs)  # new ALB, target groups and ASGs for the tests after this module
    after = Probe(staging.url, rate=20, duration=3).start()
    after.wait(timeout=30)
    frame = after.results()
    assert len(frame) >= 40 and frame["ok"].all()
    assert set(zip(frame["color"], frame["version"], strict=True)) == {("blue", "1.0.0")}
    assert listener_weights(stack, outputs) == {"blue": 100, "green": 0}
    assert probes.no_change_plan(target, "staging") == (True, "no changes")
    assert probes.ledger_consistent(target, "staging")[0]
    ok, detail = accidental_destroy.serves_what_served_before(target, "staging")
    assert ok, detail

    again = run_runbook(
        "restore-environment",
        target,
        {"environment": "staging", "dry_run": False, "confirm": "staging"},
        out_root=tmp_path,
    )
    assert again.ok and again.record.outcome == "nothing-to-do", again.error
    assert not [s for s in again.record.steps if s.section == "act"]
