"""Strategies as data: the built-in shapes, round trips, and errors that say what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labkit.deploy.strategy import (
    DEFAULT_BAKE_S,
    STRATEGY_NAMES,
    Step,
    Strategy,
    Thresholds,
    all_at_once,
    canary,
    from_dict,
    from_name,
    linear,
)
from labkit.errors import ConfigError, LabkitError


def test_canary_defaults_are_short_sandbox_bakes() -> None:
    s = canary()
    assert s.name == "canary"
    assert s.steps == ((10, 5.0), (50, 5.0), (100, 5.0))
    assert s.weights == (10, 50, 100)
    assert s.total_bake_s == 3 * DEFAULT_BAKE_S
    assert s.thresholds == Thresholds(min_requests=20, max_5xx_rate=0.01, max_p95_ms=1000.0)
    assert s.health_timeout_s == 60.0
    assert s.scale_down_delay_s == 5.0


def test_canary_with_a_bake_per_step() -> None:
    s = canary([5, 25, 100], bake_s=[1, 2.5, 0])
    assert s.steps == (Step(5, 1.0), Step(25, 2.5), Step(100, 0.0))
    assert all(isinstance(step, Step) for step in s.steps)
    assert s.steps[1].bake_s == 2.5


def test_linear_caps_the_last_step_at_100() -> None:
    assert linear(30, interval_s=2).steps == ((30, 2), (60, 2), (90, 2), (100, 2))
    assert linear(25).weights == (25, 50, 75, 100)
    assert linear(100).weights == (100,)


def test_all_at_once_is_one_step_with_a_bake() -> None:
    s = all_at_once(bake_s=3)
    assert s.steps == ((100, 3.0),)
    with pytest.raises(ConfigError, match="exactly one step"):
        Strategy(name="all-at-once", steps=(Step(50, 1), Step(100, 1)))


def test_describe_is_one_readable_line() -> None:
    assert canary([10, 100], bake_s=[2, 0]).describe() == "canary: 10% (bake 2s) -> 100% (bake 0s)"


@pytest.mark.parametrize("name", [*STRATEGY_NAMES, "ALL_AT_ONCE", " Canary "])
def test_from_name_knows_every_shape(name: str) -> None:
    s = from_name(name)
    assert s.name == name.strip().lower().replace("_", "-")
    assert s.steps[-1].weight == 100


def test_from_name_applies_overrides() -> None:
    s = from_name("linear", step_percent=50, interval_s=1, max_5xx_rate=0.1, scale_down_delay_s=0)
    assert s.steps == ((50, 1), (100, 1))
    assert s.thresholds.max_5xx_rate == 0.1
    assert s.scale_down_delay_s == 0


def test_unknown_strategy_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        from_name("blue-green-magic")
    assert "Unknown strategy 'blue-green-magic'" in str(info.value)
    assert info.value.hint == "Use one of: all-at-once, canary, linear."
    assert isinstance(info.value, LabkitError)


def test_an_override_the_shape_does_not_have_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        from_name("linear", weights=[10, 100])
    assert "no setting 'weights'" in str(info.value)
    assert "step_percent" in str(info.value.hint)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([10, 50], "must end at 100"),
        ([50, 10, 100], "must rise strictly: step 2 has 10 after 50"),
        ([10, 10, 100], "must rise strictly"),
        ([0, 100], "weight of step 1 is 0, out of range"),
        ([10, 150], "weight of step 2 is 150, out of range"),
        ([10.5, 100], "must be a whole number"),
        ([True, 100], "must be a whole number"),
        ([], "has no steps"),
    ],
)
def test_bad_weights_say_what_is_wrong(weights: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        canary(weights)
    assert info.value.hint


def test_the_fix_for_a_missing_100_is_spelled_out() -> None:
    with pytest.raises(ConfigError) as info:
        canary([10, 50])
    assert info.value.hint == "Add a final step of 100, e.g. weights [10, 50, 100]."


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bake_s": -1}, "bake_s of step 1 is -1, out of range"),
        ({"bake_s": float("nan")}, "must be a number"),
        ({"bake_s": "5"}, "must be a number"),
        ({"bake_s": [1, 2]}, "bake_s has 2 values but weights has 3"),
        ({"max_5xx_rate": 5}, "max_5xx_rate is 5, out of range"),
        ({"max_5xx_rate": -0.1}, "max_5xx_rate"),
        ({"min_requests": 0}, "min_requests is 0, out of range"),
        ({"max_p95_ms": 0}, "max_p95_ms is 0, out of range"),
        ({"health_timeout_s": 0}, "health_timeout_s is 0, out of range"),
        ({"scale_down_delay_s": -5}, "scale_down_delay_s is -5, out of range"),
        ({"scale_down_delay_s": 10**7}, "scale_down_delay_s"),
        ({"check_rate": -1}, "check_rate is -1, out of range"),
        ({"check_rate": 1000}, "check_rate is 1000, out of range"),
        ({"on_inconclusive": "hope"}, "on_inconclusive is 'hope'"),
    ],
)
def test_bad_settings_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        canary(**kwargs)
    assert info.value.hint


def test_the_5xx_rate_hint_explains_fractions() -> None:
    with pytest.raises(ConfigError) as info:
        canary(max_5xx_rate=5)
    assert info.value.hint == "It is a fraction between 0 and 1: for 5 % write 0.05."


@pytest.mark.parametrize("step_percent", [0, 101, 2.5])
def test_linear_step_must_be_1_to_100(step_percent: Any) -> None:
    with pytest.raises(ConfigError, match="step_percent"):
        linear(step_percent)


@pytest.mark.parametrize(
    "strategy",
    [
        canary([10, 50, 100], bake_s=[1, 2, 3]),
        linear(40, check_rate=0, on_inconclusive="pause"),
        all_at_once(on_inconclusive="promote"),
    ],
)
def test_to_dict_round_trips_through_json(strategy: Strategy) -> None:
    data = json.loads(json.dumps(strategy.to_dict()))
    assert from_dict(data) == strategy


def test_from_dict_takes_notebook_parameters() -> None:
    s = from_dict({"name": "canary", "weights": [20, 100], "bake_s": 1, "min_requests": 5})
    assert s.steps == ((20, 1), (100, 1))
    assert s.thresholds.min_requests == 5


def test_from_dict_with_explicit_steps() -> None:
    s = from_dict({"name": "canary", "steps": [[1, 0], [100, 2]], "health_timeout_s": 30})
    assert s.steps == ((1, 0), (100, 2))
    assert s.health_timeout_s == 30


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"weights": [10, 100]}, "has no 'name'"),
        ({"name": "canary", "steps": [[10, 1], [100]]}, r"Step 2 is \[100\], not a \(weight, bake_s\) pair"),
        ({"name": "canary", "steps": "10,100"}, "steps must be a list"),
        ({"name": "canary", "steps": [[100, 1]], "weights": [100]}, "explicit steps takes no 'weights'"),
        ({"name": "rolling"}, "Unknown strategy 'rolling'"),
    ],
)
def test_from_dict_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_from_dict_refuses_a_non_dict() -> None:
    with pytest.raises(ConfigError, match="must be given as a dict"):
        from_dict("canary")  # type: ignore[arg-type]


def test_strategies_are_frozen() -> None:
    s = canary()
    with pytest.raises(AttributeError):
        s.name = "linear"  # type: ignore[misc]


def test_a_stored_strategy_from_before_check_traffic_gets_the_defaults() -> None:
    """Ledger records written before check_rate and on_inconclusive existed still load."""
    old = {"name": "canary", "steps": [[10, 5], [100, 5]], "min_requests": 20}
    strategy = from_dict(old)
    assert (strategy.check_rate, strategy.on_inconclusive) == (20.0, "rollback")


def test_describe_names_a_policy_other_than_rollback() -> None:
    assert canary().describe().endswith("100% (bake 5s)")
    assert canary(on_inconclusive="pause").describe().endswith(", pause when inconclusive")
