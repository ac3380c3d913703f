"""The state drills' parts that need no sandbox: how a drill's apply process reaches the target,
and the refusal of an unknown corruption."""

from __future__ import annotations

import pytest

from labkit.errors import DrillError
from labkit.ops.drills import all_drills, corrupt_state
from labkit.ops.drills._apply import root_options
from labkit.target import Target


def test_the_state_drills_are_found_with_their_runbooks() -> None:
    found = all_drills()
    assert found["corrupt-state"].runbook == "restore-state"
    assert found["stuck-lock"].runbook == "unlock-state"
    assert found["concurrent-applies"].runbook is None


def test_an_apply_process_reaches_the_same_target() -> None:
    sandbox = Target("sandbox", "us-east-1", endpoint_url="http://127.0.0.1:4566")
    assert root_options(sandbox) == [
        "--target", "sandbox", "--endpoint-url", "http://127.0.0.1:4566", "--region", "us-east-1",
    ]  # fmt: skip
    aws = Target("aws", "eu-west-1", profile="lab", allow_spend=True)
    assert root_options(aws) == [
        "--target",
        "aws",
        "--region",
        "eu-west-1",
        "--profile",
        "lab",
        "--allow-spend",
    ]


def test_an_unknown_corruption_is_refused_before_anything_is_touched() -> None:
    target = Target("sandbox", "us-east-1", endpoint_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DrillError, match="no variant 'bitflip'") as raised:
        corrupt_state.inject(target, "staging", variant="bitflip")
    assert "garbage, truncated, other-lineage, deleted" in str(raised.value.hint)
