"""The notebooks' guard-cell checks and the weight timeline a deploy's probe marks give."""

from __future__ import annotations

import pytest

from labkit.deploy import weights_from_marks
from labkit.errors import ConfigError, LessonOrderError
from labkit.lab import lesson
from labkit.target import sandbox


@pytest.mark.parametrize("target", ["sandbx", "", None, 3])
def test_an_unknown_target_is_refused_naming_the_choices(target: object) -> None:
    with pytest.raises(ConfigError, match="target is") as caught:
        lesson.open_target(target)  # type: ignore[arg-type]
    assert "'sandbox'" in str(caught.value) and "'aws'" in str(caught.value)


@pytest.mark.parametrize("value", ["true", 1, None])
def test_allow_spend_must_be_a_real_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="allow_spend is") as caught:
        lesson.open_target("aws", allow_spend=value)  # type: ignore[arg-type]
    assert "-p allow_spend true" in str(caught.value)


def test_a_region_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="aws_region is 3"):
        lesson.open_target("aws", aws_region=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "whole", "ok"),
    [(1, True, True), (4, True, True), (0, True, False), (5, True, False), (2.0, True, False),
     (True, True, False), ("3", False, False), (0.5, False, True), (float("nan"), False, False)],
)  # fmt: skip
def test_check_number(value: object, whole: bool, ok: bool) -> None:
    if ok:
        lesson.check_number("capacity", value, 0.5 if not whole else 1, 4, whole=whole)
    else:
        with pytest.raises(ConfigError, match="capacity is") as caught:
            lesson.check_number("capacity", value, 1, 4, whole=whole)
        assert "from 1 to 4" in str(caught.value) and "-p capacity VALUE" in str(caught.value)


def test_check_flag() -> None:
    lesson.check_flag("teardown_global", False)
    with pytest.raises(ConfigError, match="teardown_global is 'no'"):
        lesson.check_flag("teardown_global", "no")


def test_weights_change_when_the_listener_did() -> None:
    # shift-N marks the apply's start; analysis-N the moment it had changed the listener.
    marks = [(0.0, "start"), (1.0, "provision"), (4.0, "health"), (9.0, "shift-10"), (15.0, "analysis-10"),
             (20.0, "shift-50"), (26.0, "analysis-50"), (31.0, "shift-100"), (36.0, "analysis-100"),
             (42.0, "scale-down")]  # fmt: skip
    frame = weights_from_marks(marks)
    assert frame.to_dict("list") == {"time_s": [0.0, 15.0, 26.0, 36.0], "weight": [0.0, 10.0, 50.0, 100.0]}


def test_a_rollback_holds_the_weight_until_traffic_is_restored() -> None:
    marks = [(0.0, "start"), (5.0, "shift-10"), (11.0, "analysis-10"), (12.5, "rollback"), (12.7, "restored")]
    frame = weights_from_marks(marks)
    assert frame.to_dict("list") == {"time_s": [0.0, 11.0, 12.7], "weight": [0.0, 10.0, 0.0]}


def test_an_unknown_mark_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown deploy phase mark 'warmup'"):
        weights_from_marks([(0.0, "start"), (3.0, "warmup")])
    with pytest.raises(ConfigError, match="No marks"):
        weights_from_marks([])


class _Deployed:
    """A stand-in Stack whose state holds ``deployment``."""

    env = "staging"
    target = sandbox("http://127.0.0.1:1")  # never contacted

    def __init__(self, deployment: dict[str, object]) -> None:
        self._deployment = deployment

    def deployment(self) -> dict[str, object]:
        return self._deployment


def test_a_building_lesson_refuses_a_stack_that_later_lessons_moved_on() -> None:
    after_06 = _Deployed({"green_weight": 100, "green_capacity": 2, "blue_capacity": 0})
    with pytest.raises(LessonOrderError) as raised:
        expect = {"green_weight": 0, "green_capacity": 0}
        lesson.require_not_past(after_06, this="04-blue-fleet", expect=expect)  # type: ignore[arg-type]
    assert "moved past 04-blue-fleet: green_weight is 100 (this lesson sets 0)" in raised.value.message
    assert "09-teardown" in str(raised.value.hint)
    # The lesson's own layout, or a stack not built this far, passes.
    as_built = _Deployed({"green_weight": 0, "green_capacity": 0})
    lesson.require_not_past(as_built, this="04", expect={"green_weight": 0})  # type: ignore[arg-type]
    lesson.require_not_past(_Deployed({}), this="03", expect={"green_weight": 0})  # type: ignore[arg-type]
