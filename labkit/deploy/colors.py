"""Blue/green arithmetic: which color serves, which is idle, and the Terraform variables of each move.

The stack has one traffic variable, ``green_weight`` (green's share in percent; blue gets the
rest). A deployment moves traffic *to* a color, which may be blue: then raising the new color's
share means lowering ``green_weight``. Everything here is a pure function of the ``deployment``
output that :meth:`labkit.infra.stack.Stack.deployment` reads back, so it is tested without Terraform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from labkit.errors import DeployError

Color = Literal["blue", "green"]
COLORS: tuple[Color, ...] = ("blue", "green")


def other(color: Color) -> Color:
    """The other color."""
    return "green" if color == "blue" else "blue"


def green_weight_for(color: Color, weight: int) -> int:
    """``green_weight`` that gives ``color`` ``weight`` percent of the traffic."""
    if not 0 <= weight <= 100:
        raise DeployError(f"Weight {weight} is not a percentage.", hint="Use a weight from 0 to 100.")
    return weight if color == "green" else 100 - weight


def weight_of(color: Color, green_weight: int) -> int:
    """``color``'s share of the traffic when green has ``green_weight`` percent."""
    return green_weight if color == "green" else 100 - green_weight


@dataclass(frozen=True)
class Layout:
    """The stack's deployment variables as applied: each color's release and capacity, green's weight."""

    versions: dict[Color, str]
    capacities: dict[Color, int]
    green_weight: int

    @classmethod
    def from_outputs(cls, deployment: Mapping[str, Any]) -> Layout:
        """Read the ``deployment`` output (``{}`` before the environment's first apply)."""
        missing = [
            f"{c}_{k}" for c in COLORS for k in ("version", "capacity") if deployment.get(f"{c}_{k}") is None
        ]
        if missing or deployment.get("green_weight") is None:
            raise DeployError(
                "The environment has no applied deployment (its Terraform `deployment` output is "
                f"missing {', '.join(missing) or 'green_weight'}).",
                hint="Apply the environment once with a first release on blue, e.g. "
                "Stack('staging', target).apply({'blue_version': '1.0.0', 'green_version': '1.0.0'}).",
            )
        return cls(
            versions={c: str(deployment[f"{c}_version"]) for c in COLORS},
            capacities={c: int(deployment[f"{c}_capacity"]) for c in COLORS},
            green_weight=int(deployment["green_weight"]),
        )

    def weight(self, color: Color) -> int:
        return weight_of(color, self.green_weight)

    @property
    def serving(self) -> Color | None:
        """The color with all the traffic, or None while traffic is split."""
        if self.green_weight == 0:
            return "blue"
        if self.green_weight == 100:
            return "green"
        return None

    def describe(self) -> str:
        return ", ".join(f"{c} {self.versions[c]} x{self.capacities[c]} at {self.weight(c)}%" for c in COLORS)


def pick_idle(layout: Layout) -> Color:
    """The color to deploy to: the one without traffic. Refuses a split the ledger does not explain."""
    serving = layout.serving
    if serving is None:
        raise DeployError(
            f"Traffic is split ({layout.describe()}) and no deployment is in progress.",
            hint="Put all traffic back on one color first: `labkit rollback ENV` (the color that served "
            "before the last deploy), then deploy again.",
        )
    if layout.capacities[serving] < 1:
        raise DeployError(
            f"{serving} serves all traffic but has no capacity ({layout.describe()}).",
            hint=f"Give {serving} instances first (Stack.apply({{'{serving}_capacity': 2}})); a deployment "
            "needs a serving color to roll back to.",
        )
    return other(serving)


def bring_up(color: Color, version: str, capacity: int) -> dict[str, Any]:
    """Variables that run ``version`` on ``capacity`` instances of the idle ``color`` (no traffic yet),
    and point the preview header at it."""
    check_capacity(color, capacity)
    return {f"{color}_version": version, f"{color}_capacity": capacity, "preview_color": color}


def shift(color: Color, weight: int) -> dict[str, Any]:
    """Variables that give ``color`` ``weight`` percent of the traffic."""
    return {"green_weight": green_weight_for(color, weight)}


def restore(new: Color) -> dict[str, Any]:
    """Variables of a rollback: the old color gets all traffic back. The new one keeps its
    instances until a later :func:`park`: scaling it in the same apply could drain its targets
    before the load balancer stops sending them its share, and those requests would fail."""
    return {"green_weight": green_weight_for(new, 0)}


def park(color: Color) -> dict[str, Any]:
    """Variables that scale ``color`` (now without traffic) to 0 and reset the preview color."""
    return {f"{color}_capacity": 0, "preview_color": None}


def check_capacity(color: Color, capacity: int) -> None:
    """A color that will take traffic needs at least one instance."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise DeployError(
            f"The deployment would send traffic to {color} with capacity {capacity!r}: every request "
            "routed there would fail with 503.",
            hint="Deploy with a capacity of at least 1 (CLI: --capacity 2).",
        )
    if capacity > 20:
        raise DeployError(
            f"Capacity {capacity} for {color} is more than the stack allows (20).",
            hint="Use a capacity from 1 to 20.",
        )


def as_color(value: str) -> Color:
    """``value`` as a :data:`Color` (the ledger stores colors as plain strings)."""
    if value == "blue":
        return "blue"
    if value == "green":
        return "green"
    raise DeployError(f"{value!r} is not a color.", hint="Use blue or green.")
