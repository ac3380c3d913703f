"""The drift drill on the drills' stack: `labkit stack drift` run as a user runs it, each variant
injected through the AWS API and reported exactly (resource and attribute), and reconcile-drift run
headless to revert three of them and adopt the listener's weights. The results are checked with
reads of the AWS API and the ledger that the runbook did not make.

Two tests share the work: the three variants that revert are injected together (one report, one
reconcile); the weights, which need a staged deployment, go on their own. The module's fixture
puts staging back as found should a test fail halfway.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.deploy.ledger import Ledger
from labkit.infra.drift import detect
from labkit.infra.stack import Stack
from labkit.ops import reconcile
from labkit.ops.drill import state_fingerprint
from labkit.ops.drills import drift
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.ops.probes import live_green_weight
from tests.conftest import DrillsStack
from tests.workflow_commands import STACK_DRIFT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def staging(drills_stack: DrillsStack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The drills' staging; afterwards with its deployment as found (the weights test leaves green
    warm) and, should a test have failed halfway, without the drift it left."""
    stack = drills_stack.stack()
    found = stack.deployment()
    failed = request.session.testsfailed
    yield stack
    if request.session.testsfailed > failed and (leftover := detect(stack)).has_drift:
        for action in reconcile.actions(stack, reconcile.decide(stack, leftover, "revert")):
            action.run()
    if stack.deployment() != found:
        stack.apply(found)


def labkit_drift(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run(stack: Stack, tmp_path: Path, **parameters: Any) -> RunbookRun:
    return run_runbook(
        "reconcile-drift", stack.target, {"environment": "staging", **parameters}, out_root=tmp_path
    )


def test_drift_reports_each_change_exactly_and_reconcile_reverts_them(staging: Stack, tmp_path: Path) -> None:
    fresh = labkit_drift("stack", "drift", "staging")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.splitlines()[-1].startswith("staging: no drift")

    target = staging.target
    facts = [drift.inject(target, "staging", variant=v) for v in ("sg-rule", "asg-capacity", "tag-removed")]
    found = labkit_drift(*STACK_DRIFT.args(env="staging"))  # as drift.yml runs it
    assert found.returncode == 2, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert {(r["address"], tuple(a["attribute"] for a in r["attributes"])) for r in report["resources"]} == {
        (f["address"], tuple(f["attributes"])) for f in facts
    }

    before = state_fingerprint(target, "staging")
    dry = run(staging, tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert state_fingerprint(target, "staging") == before
    assert _hand_rules(staging, facts[0]["security_group"]) != []  # the dry run revoked nothing

    fixed = run(staging, tmp_path, dry_run=False, confirm="staging")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert _hand_rules(staging, facts[0]["security_group"]) == []
    autoscaling = target.client("autoscaling")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[facts[1]["asg"]])[
        "AutoScalingGroups"
    ][0]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (2, 2, 2)
    tags = target.client("elbv2").describe_tags(ResourceArns=[facts[2]["target_group"]])["TagDescriptions"][0]
    assert {"Key": "Color", "Value": "blue"} in tags["Tags"]

    again = run(staging, tmp_path, dry_run=False, confirm="staging")
    assert again.ok and again.record.outcome == "nothing-to-do", again.error


def test_an_api_rollback_is_adopted_and_the_ledger_agrees_with_the_listener(
    staging: Stack, tmp_path: Path
) -> None:
    target = staging.target
    facts = drift.inject(target, "staging", variant="listener-weights")
    report = detect(staging)
    assert [(r.address, [a.path for a in r.attributes]) for r in report.resources] == [
        (facts["address"], facts["attributes"])
    ]
    assert not reconcile.weights_agree(staging)[0]  # state and ledger say green, the listener blue

    adopted = run(staging, tmp_path, dry_run=False, confirm="staging", decision=facts["decision"])
    assert adopted.ok and adopted.record.outcome == "recovered", adopted.error
    outputs = staging.outputs()
    live = live_green_weight(target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"]))
    assert live == 0 == staging.deployment()["green_weight"]  # the rollback stood, now in the state
    latest = Ledger(target, staging.names.ledger_table).list("staging")[0]
    assert (latest.to_color, latest.weight, latest.status) == ("blue", 100, "succeeded")
    assert latest.id != facts["staged_deployment"] and "adopted drift" in (latest.reason or "")


def _hand_rules(stack: Stack, group_id: str) -> list[dict[str, Any]]:
    groups = stack.target.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return [p for p in groups[0]["IpPermissions"] if p.get("FromPort") == drift.HAND_RULE["FromPort"]]
