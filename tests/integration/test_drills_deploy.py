"""The ``lost-deploy`` drill on the drills' staging stack: a real ``labkit deploy`` SIGKILLed in
a phase, recovered by the ``deploy-recover`` runbook run with papermill, and verified with reads
the runbook did not write: the listener's weights from ELBv2, the state, what the ALB answers, the
deployment record, both locks, the drill's steady state, and a load probe running throughout.

The kills are chained on one stack, each recovery leaving it settled for the next; the tests run in
order on the state the previous one left:

1. provision, mid-apply (its Terraform left applying): abort, after a dry run that changes nothing;
2. the first shift step: resume, green serves 1.1.0;
3. park (the scale-down of the old color), deploying 1.0.0 back to blue in one step: resume;
4. a second run finds nothing to do.

A kill in ``health`` takes the same path as one in provision (abort before any traffic moved) and is
left out to keep the module's time down; ``DRILL.inject(..., phase="health")`` runs it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.deploy.ledger import Ledger
from labkit.deploy.probe import BACKLOG_ERROR, Probe
from labkit.infra.stack import Stack
from labkit.ops import probes
from labkit.ops.drills.lost_deploy import DRILL
from labkit.ops.execute import RunbookRun, run_runbook
from tests.conftest import DrillsStack

# A drills stack of its own, on another worker than test_drills_cli.py and test_drills_state.py:
# the drills are several minutes each, and one stack for all of them would be the suite's longest chain.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]


@pytest.fixture(scope="module")
def staging(drills_stack: DrillsStack) -> Iterator[DrillsStack]:
    """The drills' staging stack with blue serving 1.0.0 on two healthy instances."""
    drills_stack.blue_serves_1_0_0()
    yield drills_stack


@pytest.fixture(scope="module")
def stack(staging: DrillsStack) -> Stack:
    """One Stack for the module's reads (each new one runs `terraform init` first)."""
    return staging.stack()


@pytest.fixture(scope="module")
def probe(staging: DrillsStack) -> Iterator[Probe]:
    """A load probe through the ALB for the whole module; its traffic also gives the analysis gate
    its evidence."""
    with Probe(staging.url, rate=25, max_duration=1800.0) as running:
        yield running


def recover(staging: DrillsStack, tmp_path: Path, **parameters: Any) -> RunbookRun:
    return run_runbook(
        "deploy-recover",
        staging.target,
        {"environment": "staging", **parameters},
        out_root=tmp_path,
        reporter=lambda _: None,
    )


def listener_weights(staging: DrillsStack, stack: Stack) -> dict[str, int]:
    """Color -> weight of the listener's forward, read from ELBv2."""
    outputs = stack.outputs()
    listener = staging.target.client("elbv2").describe_listeners(ListenerArns=[outputs["listener_arn"]])
    groups = listener["Listeners"][0]["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    by_arn = {g["TargetGroupArn"]: int(g["Weight"]) for g in groups}
    return {c: by_arn.get(str(outputs[f"{c}_target_group_arn"]), 0) for c in ("blue", "green")}


def assert_recovered(
    staging: DrillsStack, stack: Stack, facts: dict[str, Any], status: str, color: str, version: str
) -> None:
    """What the runbook did not write says: ``color`` serves ``version`` alone, the deployment ended
    ``status``, and no lock is left."""
    weights = listener_weights(staging, stack)
    other = "green" if color == "blue" else "blue"
    assert weights[color] > 0 and weights[other] == 0, weights
    layout = stack.deployment()
    assert layout["green_weight"] == (100 if color == "green" else 0), layout
    assert layout[f"{color}_version"] == version and layout[f"{color}_capacity"] >= 1, layout
    assert layout[f"{other}_capacity"] == 0, layout
    for _ in range(5):  # the ALB answers from the serving color's release
        with urllib.request.urlopen(staging.url, timeout=5) as response:
            body = json.loads(response.read())
        assert (body["color"], body["version"]) == (color, version)
    ledger = Ledger(staging.target, stack.names.ledger_table)
    record = ledger.get(facts["deployment_id"])
    assert record.status == status, record
    assert ledger.active("staging") is None and ledger.lock_holder("staging") is None
    assert stack.state_lock() is None


def assert_ran(run: RunbookRun, outcome: str) -> None:
    assert run.error is None and run.record.outcome == outcome, (run.record.summary, run.error, run.executed)


def test_1_killed_mid_provision_a_dry_run_changes_nothing_then_abort(
    staging: DrillsStack, stack: Stack, probe: Probe, tmp_path: Path
) -> None:
    probe.mark("kill provision")
    facts = DRILL.inject(staging.target, "staging", phase="provision", mid_apply=True)
    assert (facts["ledger_phase"], facts["to_color"], facts["version"]) == ("provision", "green", "1.1.0")
    ledger = Ledger(staging.target, stack.names.ledger_table)
    lock = ledger.lock_holder("staging")
    assert lock is not None and lock.pid == facts["pid"]  # the dead controller's lock is left

    dry = recover(staging, tmp_path / "dry")
    assert_ran(dry, "planned")
    text = dry.executed.read_text()
    assert "abort: no traffic had moved (phase provision)" in text and "would: Abort deployment" in text
    assert ledger.lock_holder("staging") == lock  # the dry run took nothing over
    assert ledger.get(facts["deployment_id"]).status == "in_progress"

    probe.mark("recover provision")
    assert_ran(recover(staging, tmp_path / "act", dry_run=False, confirm="staging"), "recovered")
    assert_recovered(staging, stack, facts, "aborted", "blue", "1.0.0")


def test_2_killed_in_a_shift_step_is_resumed(
    staging: DrillsStack, stack: Stack, probe: Probe, tmp_path: Path
) -> None:
    probe.mark("kill shift:1")
    facts = DRILL.inject(staging.target, "staging", phase="shift:1")
    assert (facts["ledger_phase"], facts["step_index"]) == ("shift-50", 0)
    probe.mark("recover shift:1")
    run = recover(staging, tmp_path, dry_run=False, confirm="staging")
    assert_ran(run, "recovered")
    assert "resume: mid-shift (shift-50" in run.executed.read_text()
    assert_recovered(staging, stack, facts, "succeeded", "green", "1.1.0")


def test_3_killed_while_parking_the_old_color_is_resumed(
    staging: DrillsStack, stack: Stack, probe: Probe, tmp_path: Path
) -> None:
    probe.mark("kill park")
    facts = DRILL.inject(staging.target, "staging", phase="park", weights="100")
    assert (facts["ledger_phase"], facts["to_color"], facts["version"]) == ("scale-down", "blue", "1.0.0")
    probe.mark("recover park")
    run = recover(staging, tmp_path, dry_run=False, confirm="staging")
    assert_ran(run, "recovered")
    assert "resume: blue already serves 100 %" in run.executed.read_text()
    assert_recovered(staging, stack, facts, "succeeded", "blue", "1.0.0")


def test_4_a_second_run_finds_nothing_and_the_steady_state_holds(
    staging: DrillsStack, probe: Probe, tmp_path: Path
) -> None:
    again = recover(staging, tmp_path, dry_run=False, confirm="staging")
    assert_ran(again, "nothing-to-do")
    for name, check in {**probes.STEADY_STATE, **DRILL.checks}.items():  # the drill's own steady state
        ok, detail = check(staging.target, "staging")
        assert ok, f"{name}: {detail}"
    probe.stop()
    results = probe.results()
    # A request the probe itself could not send on time (its process starved of CPU on a loaded
    # machine) says nothing about the stack; every request it sent must have succeeded.
    unsent = results["error"] == BACKLOG_ERROR
    assert unsent.mean() < 0.02, f"the probe could not send {unsent.sum()} of {len(results)} requests"
    failed = results[~results["ok"] & ~unsent]
    assert len(results) > 0 and failed.empty, failed.groupby("phase").size().to_dict()
