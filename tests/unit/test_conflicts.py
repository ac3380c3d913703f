"""resolve-name-conflict's decisions (no AWS, no Terraform: a stand-in stack records the calls)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from labkit.errors import NameConflictError
from labkit.infra.stack import Stack
from labkit.ops.conflicts import Conflict, actions

TG = 'module.environment.module.alb.aws_lb_target_group.this["green"]'
ARN = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/bglab-dev-alice-green/abc"


class FakeStack:
    def __init__(self, env: str) -> None:
        self.env = env
        self.calls: list[tuple[Any, ...]] = []

    def import_resource(self, address: str, ident: str) -> None:
        self.calls.append(("import", address, ident))

    def apply(self) -> None:
        self.calls.append(("apply",))


def conflict(owner: str | None) -> Conflict:
    return Conflict(TG, "aws_lb_target_group", "bglab-dev-alice-green", ARN, owner)


def test_import_takes_over_what_no_state_holds_then_applies() -> None:
    fake = FakeStack("dev-alice")
    planned = actions(cast(Stack, fake), [conflict(None)], "import")
    assert [a.description.split()[0] for a in planned] == ["Import", "Apply"]
    for action in planned:
        action.run()
    assert fake.calls == [("import", TG, ARN), ("apply",)]


def test_import_refuses_what_another_environment_holds() -> None:
    with pytest.raises(NameConflictError, match="held by staging's state") as refused:
        actions(cast(Stack, FakeStack("dev-alice")), [conflict("staging")], "import")
    assert "decision rename" in refused.value.hint


def test_rename_names_the_commands_for_a_developer_environment_only() -> None:
    with pytest.raises(NameConflictError) as dev:
        actions(cast(Stack, FakeStack("dev-alice")), [conflict("staging")], "rename")
    assert "labkit env destroy dev-alice" in dev.value.hint
    with pytest.raises(NameConflictError) as fixed:
        actions(cast(Stack, FakeStack("staging")), [conflict(None)], "rename")
    assert "names are fixed" in fixed.value.hint
    assert actions(cast(Stack, FakeStack("staging")), [], "rename") == []  # nothing to do
    with pytest.raises(NameConflictError, match="decision is 'adopt'"):
        actions(cast(Stack, FakeStack("staging")), [], "adopt")
