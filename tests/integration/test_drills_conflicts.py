"""The name-conflict drill on the drills' stack: the idle target group dropped from the state, the
apply that then fails with AWS's error, resolve-name-conflict run with papermill (a dry run that
changes nothing, then the import), and checks the runbook did not write: ELBv2 against the state
object, the drills' steady state (serves, a no-change plan, the ledger agrees with the listener)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from labkit.infra.stack import Stack
from labkit.ops.drill import state_fingerprint
from labkit.ops.drills import name_conflict
from labkit.ops.execute import run_runbook
from labkit.ops.probes import STEADY_STATE
from tests.conftest import DrillsStack

# On the worker of test_drills_deploy.py and test_drills_plans.py (their drills stack): the
# drills group of test_drills_state.py, test_drills_cli.py, test_drills_drift.py and
# test_drills_compare.py is long enough.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]

RUNBOOK = "resolve-name-conflict"


@pytest.fixture()
def staging(drills_stack: DrillsStack) -> Iterator[Stack]:
    """The drills' staging; afterwards with both target groups in its state again, should the test
    have failed halfway."""
    stack = drills_stack.stack()
    yield stack
    held = stack.resources()
    for color, arn in (("blue", "blue_target_group_arn"), ("green", "green_target_group_arn")):
        address = name_conflict.TARGET_GROUP.format(color=color)
        if address not in held:
            stack.import_resource(address, str(drills_stack.outputs[arn]))


def test_a_name_taken_by_what_the_state_lost_is_imported(staging: Stack, tmp_path: Path) -> None:
    target = staging.target
    facts = name_conflict.inject(target, "staging")
    assert facts["name"] == "bglab-staging-green"
    # AWS's own refusal of the name, as the failed apply printed it.
    # The AWS provider looks the name up before it creates and says so; the API itself answers with
    # AWS's own error (a call with other settings: AWS returns the group for identical ones).
    assert f"ELBv2 Target Group ({facts['name']}) already exists" in facts["error"], facts["error"]
    vpc = str(staging.state_attributes(name_conflict.TARGET_GROUP.format(color="blue"))["vpc_id"])
    with pytest.raises(ClientError) as refused:
        target.client("elbv2").create_target_group(Name=facts["name"], Protocol="HTTP", Port=8081, VpcId=vpc)
    error = refused.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "DuplicateTargetGroupName", "A target group with the specified name already exists."
    )
    ok, detail = name_conflict.target_groups_held(target, "staging")
    assert not ok and facts["arn"] in detail

    before = state_fingerprint(target, "staging")
    dry = run_runbook(RUNBOOK, target, {"environment": "staging", "decision": "import"}, out_root=tmp_path)
    assert dry.record.outcome == "planned", dry.record.summary
    assert state_fingerprint(target, "staging") == before
    assert any(facts["arn"] in step.name + step.detail for step in dry.record.steps)  # the plan names it

    confirmed = {"environment": "staging", "decision": "import", "dry_run": False, "confirm": "staging"}
    acted = run_runbook(RUNBOOK, target, confirmed, out_root=tmp_path)
    assert acted.record.outcome == "recovered", (acted.record.summary, acted.error)

    assert name_conflict.target_groups_held(target, "staging")[0]
    assert staging.state_attributes(facts["address"])["arn"] == facts["arn"]  # the same group, imported
    for check, probe in STEADY_STATE.items():
        ok, detail = probe(target, "staging")
        assert ok, f"{check}: {detail}"
