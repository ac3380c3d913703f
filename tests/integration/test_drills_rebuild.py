"""The accidental-destroy drill end to end on the drills' staging stack (real Terraform, real
sandbox): a real `labkit stack destroy staging` under a probe, then the restore-environment
runbook's dry run, its confirmed run, and a second run that finds nothing to do, verified by the
drill's steady state (the load balancer serves what served before the destroy, read from the state
bucket's kept versions).

Lesson 10 ran this drill by default until it moved onto the stack 08 leaves (issue 17: the rebuild
takes about 80 s, 60 of them the AWS provider waiting for the new load balancer); it is one of its
"Try it" items now. The last module of its group, since the rebuilt stack serves on a new address.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.ops.drill import run_drill
from labkit.ops.execute import run_runbook
from tests.conftest import DrillsStack, target_states

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]


def test_a_destroyed_staging_is_rebuilt_by_its_runbook_and_serves_what_it_served(
    drills_stack: DrillsStack, tmp_path: Path
) -> None:
    target = drills_stack.target
    drills_stack.blue_serves_1_0_0()

    def blue_serves() -> bool:
        states = target_states(target, str(drills_stack.outputs["blue_target_group_arn"]))
        return len(states) == 2 and set(states.values()) == {("healthy", None)}

    said: list[str] = []
    report = run_drill("accidental-destroy", target, "staging", probe_rate=20.0, say=said.append)
    printed = "\n".join(said)
    assert report.verified, printed
    assert "ok: serves-what-served-before" in printed, printed
    assert [(run.record.dry_run, run.record.outcome) for run in report.runs] == [
        (True, "planned"), (False, "recovered"),
    ], printed  # fmt: skip
    assert report.lost_state_versions in (0, None), report.figures()
    # The destroy took the service down, and the probe saw it, from the injection to the recovery.
    assert 0 < report.failed_requests <= report.requests, report.figures()
    assert report.time_to_recover_s is not None and report.time_to_recover_s > 0

    second = run_runbook(
        "restore-environment", target, {"environment": "staging", "dry_run": False}, out_root=tmp_path
    )
    assert second.record.outcome == "nothing-to-do", (second.record.summary, second.executed)
    assert blue_serves()
