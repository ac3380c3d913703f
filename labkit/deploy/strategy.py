"""Deployment strategies as data: how weight moves to the new color, and what gates each move.

A :class:`Strategy` is a list of steps, each a (weight, bake_s) pair: set the new color's weight
(percent of traffic) to ``weight``, let it bake for ``bake_s`` seconds, then the analysis gate must
pass before the next step (and, after the last step, before the release is declared done). Three
shapes are built in:

- ``all-at-once``: one step, 100 %.
- ``canary``: a few rising weights, for example 10, 50, 100.
- ``linear``: ``step_percent`` more every ``interval_s`` seconds until 100 %.

The defaults suit the sandbox, where a lesson should finish in about a minute: 5 s bakes, at least
20 requests before a verdict, at most 1 % 5xx, p95 below 1 s, 60 s for new targets to turn healthy,
5 s before the old color scales to 0. The controller sends its own check traffic to the new color
(``check_rate`` requests per second) so every bake has evidence even when no user is there; a step
that still has too little to judge is decided by ``on_inconclusive`` (default: roll back). On AWS,
ALB metrics arrive in 60 s periods a minute or more late, and the check traffic is the fresh
evidence: use bakes of a minute or more (``bake_s=60``) and a longer scale-down delay so a rollback
stays instant.

Build one with :func:`canary`, :func:`linear`, :func:`all_at_once`, :func:`from_name` (CLI) or
:func:`from_dict` (notebook and runbook parameters, and the ledger's stored copy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from labkit.errors import ConfigError

StrategyName = Literal["all-at-once", "canary", "linear"]
STRATEGY_NAMES: tuple[StrategyName, ...] = ("all-at-once", "canary", "linear")

#: Sandbox-friendly defaults (see the module docstring for AWS).
DEFAULT_BAKE_S = 5.0
DEFAULT_CANARY_WEIGHTS = (10, 50, 100)
DEFAULT_LINEAR_STEP_PERCENT = 25
DEFAULT_MIN_REQUESTS = 20
DEFAULT_MAX_5XX_RATE = 0.01
DEFAULT_MAX_P95_MS = 1000.0
DEFAULT_HEALTH_TIMEOUT_S = 60.0
DEFAULT_SCALE_DOWN_DELAY_S = 5.0
#: The controller's own check traffic to the new color during each bake, in requests per second:
#: 20/s gives the default gate its 20 requests in the first second of a bake.
DEFAULT_CHECK_RATE = 20.0
MAX_CHECK_RATE = 200.0

#: What a step does when its bake ends without evidence enough to judge (after a hold).
OnInconclusive = Literal["rollback", "pause", "promote"]
ON_INCONCLUSIVE: tuple[OnInconclusive, ...] = ("rollback", "pause", "promote")

# A bake or delay longer than a day is almost certainly minutes or milliseconds typed as seconds.
_MAX_WAIT_S = 86_400.0

_COMMON_KEYS = (
    "min_requests",
    "max_5xx_rate",
    "max_p95_ms",
    "health_timeout_s",
    "scale_down_delay_s",
    "check_rate",
    "on_inconclusive",
)
_SHAPE_KEYS: dict[StrategyName, tuple[str, ...]] = {
    "all-at-once": ("bake_s",),
    "canary": ("weights", "bake_s"),
    "linear": ("step_percent", "interval_s"),
}


class Step(NamedTuple):
    """One step: the new color's weight in percent, then how long to bake before the gate."""

    weight: int
    bake_s: float


@dataclass(frozen=True)
class Thresholds:
    """What the analysis gate demands of the new color during a bake.

    - ``min_requests``: fewer requests than this is *inconclusive*, never a failure, so a quiet
      environment does not abort a good release.
    - ``max_5xx_rate``: the highest acceptable share of 5xx responses, a fraction (0.01 = 1 %).
    - ``max_p95_ms``: the highest acceptable 95th-percentile latency in milliseconds.
    """

    min_requests: int = DEFAULT_MIN_REQUESTS
    max_5xx_rate: float = DEFAULT_MAX_5XX_RATE
    max_p95_ms: float = DEFAULT_MAX_P95_MS

    def __post_init__(self) -> None:
        _check_int("min_requests", self.min_requests, low=1)
        _check_number(
            "max_5xx_rate",
            self.max_5xx_rate,
            low=0.0,
            high=1.0,
            hint="It is a fraction between 0 and 1: for 5 % write 0.05.",
        )
        _check_number("max_p95_ms", self.max_p95_ms, low=0.0, low_inclusive=False, high=600_000.0)


@dataclass(frozen=True)
class Strategy:
    """How a release takes traffic: steps plus the gate's thresholds and timeouts.

    ``health_timeout_s`` bounds the wait for every new target to turn healthy before any weight
    moves; ``scale_down_delay_s`` is how long the old color keeps running at weight 0 after success
    (the window in which a rollback is instant). ``check_rate`` is the controller's own traffic to
    the new color during each bake, in requests per second (0: none, judge only what users send);
    ``on_inconclusive`` what a step does when it still has too little evidence after its bake and
    a hold: ``rollback`` (the default), ``pause`` (stop there, for ``labkit deploy resume`` or
    ``abort``) or ``promote`` (move on without evidence, recorded as such).
    """

    name: StrategyName
    steps: tuple[Step, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    scale_down_delay_s: float = DEFAULT_SCALE_DOWN_DELAY_S
    check_rate: float = DEFAULT_CHECK_RATE
    on_inconclusive: OnInconclusive = "rollback"

    def __post_init__(self) -> None:
        if self.name not in STRATEGY_NAMES:
            raise _unknown_name(self.name)
        object.__setattr__(self, "steps", _check_steps(self.steps))
        if self.name == "all-at-once" and len(self.steps) != 1:
            raise ConfigError(
                f"An all-at-once strategy has exactly one step (100 %), not {len(self.steps)}.",
                hint="Use name='canary' for several steps, or steps=[(100, BAKE_S)].",
            )
        if not isinstance(self.thresholds, Thresholds):
            raise ConfigError(
                f"thresholds must be a Thresholds, not {type(self.thresholds).__name__}.",
                hint="Build it with labkit.deploy.strategy.Thresholds(min_requests=..., ...).",
            )
        _check_number(
            "health_timeout_s", self.health_timeout_s, low=0.0, low_inclusive=False, high=_MAX_WAIT_S
        )
        _check_number("scale_down_delay_s", self.scale_down_delay_s, low=0.0, high=_MAX_WAIT_S)
        _check_number(
            "check_rate",
            self.check_rate,
            low=0.0,
            high=MAX_CHECK_RATE,
            hint=f"Requests per second from 0 (no check traffic) to {MAX_CHECK_RATE:g}.",
        )
        if self.on_inconclusive not in ON_INCONCLUSIVE:
            raise ConfigError(
                f"on_inconclusive is {self.on_inconclusive!r}.",
                hint=f"Use one of: {', '.join(ON_INCONCLUSIVE)}.",
            )

    @property
    def weights(self) -> tuple[int, ...]:
        return tuple(step.weight for step in self.steps)

    @property
    def total_bake_s(self) -> float:
        """The least time the shift takes: the sum of the bakes."""
        return sum(step.bake_s for step in self.steps)

    def describe(self) -> str:
        """One line for people, e.g. ``canary: 10% (bake 5s) -> 50% (bake 5s) -> 100% (bake 5s)``."""
        steps = " -> ".join(f"{s.weight}% (bake {s.bake_s:g}s)" for s in self.steps)
        extra = "" if self.on_inconclusive == "rollback" else f", {self.on_inconclusive} when inconclusive"
        return f"{self.name}: {steps}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready) that :func:`from_dict` turns back into the same strategy."""
        return {
            "name": self.name,
            "steps": [[s.weight, s.bake_s] for s in self.steps],
            "min_requests": self.thresholds.min_requests,
            "max_5xx_rate": self.thresholds.max_5xx_rate,
            "max_p95_ms": self.thresholds.max_p95_ms,
            "health_timeout_s": self.health_timeout_s,
            "scale_down_delay_s": self.scale_down_delay_s,
            "check_rate": self.check_rate,
            "on_inconclusive": self.on_inconclusive,
        }


def all_at_once(
    *,
    bake_s: float = DEFAULT_BAKE_S,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    max_5xx_rate: float = DEFAULT_MAX_5XX_RATE,
    max_p95_ms: float = DEFAULT_MAX_P95_MS,
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
    scale_down_delay_s: float = DEFAULT_SCALE_DOWN_DELAY_S,
    check_rate: float = DEFAULT_CHECK_RATE,
    on_inconclusive: OnInconclusive = "rollback",
) -> Strategy:
    """Everything to the new color in one step, then one bake and gate (rollback still possible)."""
    return Strategy(
        name="all-at-once",
        steps=(Step(100, bake_s),),
        thresholds=Thresholds(min_requests, max_5xx_rate, max_p95_ms),
        health_timeout_s=health_timeout_s,
        scale_down_delay_s=scale_down_delay_s,
        check_rate=check_rate,
        on_inconclusive=on_inconclusive,
    )


def canary(
    weights: Sequence[int] = DEFAULT_CANARY_WEIGHTS,
    *,
    bake_s: float | Sequence[float] = DEFAULT_BAKE_S,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    max_5xx_rate: float = DEFAULT_MAX_5XX_RATE,
    max_p95_ms: float = DEFAULT_MAX_P95_MS,
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
    scale_down_delay_s: float = DEFAULT_SCALE_DOWN_DELAY_S,
    check_rate: float = DEFAULT_CHECK_RATE,
    on_inconclusive: OnInconclusive = "rollback",
) -> Strategy:
    """Rising weights, for example ``canary([10, 50, 100], bake_s=30)``.

    ``bake_s`` is one time for every step or one per step (same length as ``weights``).
    """
    weights = _as_sequence("weights", weights)
    if isinstance(bake_s, (str, bytes)) or not isinstance(bake_s, Sequence):
        bakes: Sequence[Any] = [bake_s] * len(weights)  # one time for all; checked per step
    else:
        bakes = bake_s
        if len(bakes) != len(weights):
            raise ConfigError(
                f"bake_s has {len(bakes)} values but weights has {len(weights)}.",
                hint="Give one bake time for all steps (bake_s=5) or one per weight.",
            )
    return Strategy(
        name="canary",
        steps=tuple(Step(w, b) for w, b in zip(weights, bakes, strict=True)),
        thresholds=Thresholds(min_requests, max_5xx_rate, max_p95_ms),
        health_timeout_s=health_timeout_s,
        scale_down_delay_s=scale_down_delay_s,
        check_rate=check_rate,
        on_inconclusive=on_inconclusive,
    )


def linear(
    step_percent: int = DEFAULT_LINEAR_STEP_PERCENT,
    *,
    interval_s: float = DEFAULT_BAKE_S,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    max_5xx_rate: float = DEFAULT_MAX_5XX_RATE,
    max_p95_ms: float = DEFAULT_MAX_P95_MS,
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
    scale_down_delay_s: float = DEFAULT_SCALE_DOWN_DELAY_S,
    check_rate: float = DEFAULT_CHECK_RATE,
    on_inconclusive: OnInconclusive = "rollback",
) -> Strategy:
    """``step_percent`` more every ``interval_s`` seconds; the last step is capped at 100.

    ``linear(30)`` gives 30, 60, 90, 100.
    """
    _check_int("step_percent", step_percent, low=1, high=100)
    weights = [*range(step_percent, 100, step_percent), 100]
    return Strategy(
        name="linear",
        steps=tuple(Step(w, interval_s) for w in weights),
        thresholds=Thresholds(min_requests, max_5xx_rate, max_p95_ms),
        health_timeout_s=health_timeout_s,
        scale_down_delay_s=scale_down_delay_s,
        check_rate=check_rate,
        on_inconclusive=on_inconclusive,
    )


def from_name(name: str, **overrides: Any) -> Strategy:
    """The built-in strategy called ``name`` with keyword overrides, as the CLI asks for it.

    ``from_name("canary", weights=[20, 100], bake_s=10, max_5xx_rate=0.05)``. The overrides each
    shape accepts: all-at-once ``bake_s``; canary ``weights``, ``bake_s``; linear
    ``step_percent``, ``interval_s``; every shape also the threshold and timeout settings.
    """
    shape = _normalize_name(name)
    allowed = (*_SHAPE_KEYS[shape], *_COMMON_KEYS)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(
            f"The {shape} strategy has no setting {', '.join(repr(k) for k in unknown)}.",
            hint=f"Settings for {shape}: {', '.join(allowed)}.",
        )
    if shape == "canary":
        return canary(**overrides)
    if shape == "linear":
        return linear(**overrides)
    return all_at_once(**overrides)


def from_dict(data: Mapping[str, Any]) -> Strategy:
    """A strategy from plain data, e.g. a notebook parameter or the ledger's stored copy.

    Either the shape's settings (``{"name": "canary", "weights": [10, 50, 100], "bake_s": 5}``,
    as :func:`from_name`) or explicit steps, as :meth:`Strategy.to_dict` writes them
    (``{"name": "canary", "steps": [[10, 5], [100, 5]], ...}``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"A strategy must be given as a dict, not {type(data).__name__}.",
            hint='For example {"name": "canary", "weights": [10, 50, 100], "bake_s": 5}.',
        )
    if "name" not in data:
        raise ConfigError(
            "The strategy has no 'name'.",
            hint=f'Add "name": one of {", ".join(STRATEGY_NAMES)}.',
        )
    settings = dict(data)
    name = settings.pop("name")
    if "steps" not in settings:
        return from_name(name, **settings)
    shape = _normalize_name(name)
    unknown = sorted(set(settings) - {"steps", *_COMMON_KEYS})
    if unknown:
        raise ConfigError(
            f"A strategy with explicit steps takes no {', '.join(repr(k) for k in unknown)}.",
            hint=f"Give steps plus any of: {', '.join(_COMMON_KEYS)}; or drop steps and use "
            f"{', '.join(_SHAPE_KEYS[shape])}.",
        )
    steps = tuple(_as_step(i, pair) for i, pair in enumerate(_as_sequence("steps", settings.pop("steps"))))
    thresholds = Thresholds(
        **{k: settings.pop(k) for k in ("min_requests", "max_5xx_rate", "max_p95_ms") if k in settings}
    )
    return Strategy(name=shape, steps=steps, thresholds=thresholds, **settings)


def _normalize_name(name: object) -> StrategyName:
    text = str(name).strip().lower().replace("_", "-")
    if text not in STRATEGY_NAMES:
        raise _unknown_name(name)
    return text


def _unknown_name(name: object) -> ConfigError:
    return ConfigError(f"Unknown strategy {name!r}.", hint=f"Use one of: {', '.join(STRATEGY_NAMES)}.")


def _check_steps(steps: object) -> tuple[Step, ...]:
    pairs = _as_sequence("steps", steps)
    if not pairs:
        raise ConfigError(
            "The strategy has no steps.", hint="Give at least one step; the last one must be weight 100."
        )
    checked: list[Step] = []
    for index, pair in enumerate(pairs):
        weight, bake_s = _as_step(index, pair)
        where = f"step {index + 1}"
        _check_int(f"weight of {where}", weight, low=1, high=100)
        _check_number(f"bake_s of {where}", bake_s, low=0.0, high=_MAX_WAIT_S)
        if checked and weight <= checked[-1].weight:
            raise ConfigError(
                f"Weights must rise strictly: {where} has {weight} after {checked[-1].weight}.",
                hint="List each weight once, smallest first, e.g. 10, 50, 100.",
            )
        checked.append(Step(int(weight), float(bake_s)))
    if checked[-1].weight != 100:
        raise ConfigError(
            f"The last step's weight is {checked[-1].weight}, but a deployment must end at 100.",
            hint=f"Add a final step of 100, e.g. weights {[*[s.weight for s in checked], 100]}.",
        )
    return tuple(checked)


def _as_step(index: int, pair: object) -> Step:
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise ConfigError(
            f"Step {index + 1} is {pair!r}, not a (weight, bake_s) pair.",
            hint="Write steps as [[10, 5], [50, 5], [100, 5]].",
        )
    return Step(pair[0], pair[1])


def _as_sequence(name: str, value: object) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a list, not {value!r}.", hint=f"For example {name}=[10, 50, 100].")
    return value


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {value!r}.", hint=_range_text(low, high))
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} is {value}, out of range.", hint=_range_text(low, high))


def _check_number(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_inclusive: bool = True,
    hint: str | None = None,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, not {value!r}.", hint=hint or _range_text(low, high))
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high:
        bound = "at least" if low_inclusive else "more than"
        hint = hint or f"Use a value {bound} {low:g} and at most {high:g}."
        raise ConfigError(f"{name} is {value}, out of range.", hint=hint)


def _range_text(low: float, high: float | None) -> str:
    return f"Use a whole number from {low:g} to {high:g}." if high is not None else f"Use {low:g} or more."
