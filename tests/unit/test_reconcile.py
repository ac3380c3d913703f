"""labkit.ops.reconcile: each drifted attribute decided before anything changes (no Terraform, no AWS:
reverting and refusing to adopt read nothing live)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from labkit.errors import DrillError, RunbookError
from labkit.infra.drift import AttributeDrift, DriftReport, ResourceDrift
from labkit.infra.stack import Stack
from labkit.ops.drills import all_drills, drift
from labkit.ops.reconcile import decide
from labkit.target import Target

SG = ResourceDrift(
    "module.environment.module.alb.aws_security_group.alb",
    "aws_security_group",
    "changed",
    (AttributeDrift("ingress[0]", None, {"protocol": "tcp", "from_port": 22, "to_port": 22}),),
)
TG = ResourceDrift(
    'module.environment.module.alb.aws_lb_target_group.this["blue"]',
    "aws_lb_target_group",
    "changed",
    (AttributeDrift("tags.Color", "blue", None),),
)
GONE = ResourceDrift("module.environment.module.monitoring.aws_sns_topic.alarms", "aws_sns_topic", "deleted")
REPORT = DriftReport("staging", (SG, TG, GONE))
#: Nothing here may reach the stack: these decisions need no live value.
NO_STACK = cast(Stack, object())


def test_revert_applies_the_code_but_revokes_a_hand_added_rule() -> None:
    changes = decide(NO_STACK, REPORT, "revert").changes
    assert [(c.resource.address, c.how) for c in changes] == [
        (SG.address, "api"),  # no apply removes a rule the code does not manage
        (TG.address, "apply"),
        (GONE.address, "apply"),
    ]
    assert "revoke the rule through the EC2 API" in changes[0].describe()
    assert changes[2].describe().endswith("(deleted): apply the code")


@pytest.mark.parametrize("decisions", [{}, {TG.address: "adopt"}])
def test_adopting_code_is_refused_naming_what(decisions: dict[str, Any]) -> None:
    decision = "adopt" if not decisions else "revert"
    with pytest.raises(RunbookError) as refused:
        decide(NO_STACK, DriftReport("staging", (TG,)), decision, decisions)
    assert f"{TG.address} tags.Color" in refused.value.message
    assert "decisions={ADDRESS: 'revert'}" in str(refused.value.hint)


def test_an_unknown_decision_is_refused() -> None:
    with pytest.raises(RunbookError, match="neither"):
        decide(NO_STACK, REPORT, "keep")


def test_the_drift_drill_refuses_an_unknown_variant_before_touching_anything() -> None:
    assert all_drills()["drift"].runbook == "reconcile-drift"
    nowhere = Target("sandbox", "us-east-1", endpoint_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DrillError, match="no variant 'bitflip'") as raised:
        drift.inject(nowhere, "staging", variant="bitflip")
    assert "listener-weights" in str(raised.value.hint)
