"""The ``promote-composition`` runbook's logic: move production's composition pin to the release
staging runs, once staging has run it.

Production runs the composition module from a released copy (:mod:`labkit.infra.composition`);
staging runs the working tree. :func:`diagnose` reads what staging was last applied from, from its
state's ``composition`` output (version and digest), which only a successful apply writes: that is
the proof staging ran it. It is promoted only as that exact release, the files staging ran:

- when the release folder exists, its digest must be staging's;
- when it does not yet, the working tree must still be what staging ran: the run cuts the release
  from it first (a composition edited since staging's apply is refused: apply staging again).

Then the pin moves, production is planned with it, and applied (``plan_only`` stops after the plan,
e.g. for a production that is not built: its plan shows what the promoted composition would build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.errors import RunbookError
from labkit.infra import composition
from labkit.infra.compare import resolved_composition
from labkit.infra.stack import Stack
from labkit.infra.terraform import PlanResult
from labkit.ops.probes import Check
from labkit.ops.runbook import Action
from labkit.settings import terraform_dir

#: The environment whose applied composition is promoted, and the one it is promoted to.
SOURCE, DESTINATION = "staging", "production"


@dataclass(frozen=True)
class Promotion:
    """What the diagnosis found: staging's applied release, production's pin, and what to do."""

    version: str
    digest: str
    pin: composition.Pin
    release_exists: bool
    production_built: bool

    @property
    def needed(self) -> bool:
        return (self.pin.version, self.pin.digest) != (self.version, self.digest)

    def __str__(self) -> str:
        ran = f"{SOURCE} was applied from composition {self.version} ({self.digest[:12]})"
        if not self.needed:
            return f"{ran}; {self.pin.describe()}: the same"
        release = "released" if self.release_exists else "not released yet (the working tree is what it ran)"
        return f"{ran}, {release}; {self.pin.describe()}"


def diagnose(production: Stack) -> Promotion:
    """Staging's applied composition and production's pin; refuses what cannot be promoted."""
    if production.env != DESTINATION:
        raise RunbookError(
            f"promote-composition moves {DESTINATION}'s pin; {production.env} was given.",
            hint=f"{SOURCE} runs the working tree (terraform/modules): apply it. Run this with "
            f"-p environment {DESTINATION}.",
        )
    applied = Stack(SOURCE, production.target, reporter=None).outputs().get("composition")
    if not isinstance(applied, dict) or not applied.get("version"):
        raise RunbookError(
            f"{SOURCE}'s state records no composition it was applied from: it was never applied, or "
            "before its root had the composition output.",
            hint=f"Apply {SOURCE} (`labkit stack apply {SOURCE}`), check it, then run this again.",
        )
    version, found = str(applied["version"]), str(applied["digest"])
    release = composition.releases_dir() / f"v{version}"
    if release.is_dir() and composition.digest(release) != found:
        raise RunbookError(
            f"{SOURCE} was applied from composition {version} with digest {found[:12]}, but release "
            f"v{version} has {composition.digest(release)[:12]}: {SOURCE} ran other files.",
            hint="Bump terraform/modules/bluegreen_environment/VERSION, apply staging with it, then promote.",
        )
    if not release.is_dir() and composition.digest(terraform_dir() / "modules") != found:
        raise RunbookError(
            f"{SOURCE} was applied from composition {version} ({found[:12]}), which is not released, and the "
            "working tree has changed since: what staging ran is gone.",
            hint=f"Apply {SOURCE} with the working tree as it is now (`labkit stack apply {SOURCE}`), then "
            "promote.",
        )
    return Promotion(
        version=version,
        digest=found,
        pin=composition.pin(DESTINATION),
        release_exists=release.is_dir(),
        production_built=bool(production.state().get("resources")),
    )


def plan_production(production: Stack) -> PlanResult:
    """A plan of production with its pin as it is now; an unbuilt production is planned with
    staging's deployment variables (it has none of its own)."""
    variables: dict[str, Any] | None = None
    if not production.state().get("resources"):
        variables = Stack(SOURCE, production.target, reporter=None).deployment()
    return production.plan(variables)


def actions(production: Stack, promotion: Promotion, *, plan_only: bool) -> list[Action]:
    """Cut the release (when staging ran an unreleased working tree), move the pin, plan, apply."""
    if not promotion.needed:
        return []
    if not plan_only and not promotion.production_built:
        raise RunbookError(
            f"{DESTINATION} is not built: applying would build all of it, which is not a promotion.",
            hint="Run with -p plan_only true to move the pin and see the plan, or build production first "
            "(`labkit stack apply production --var blue_version=VERSION --var green_version=VERSION`).",
        )
    version = promotion.version
    planned: list[Action] = []
    if not promotion.release_exists:
        planned.append(
            Action(
                f"release composition {version}: copy terraform/modules to "
                f"terraform/releases/bluegreen_environment/v{version}",
                lambda: composition.cut_release(version),
            )
        )
    planned.append(
        Action(
            f"move {DESTINATION}'s pin from {promotion.pin.link} to release v{version}",
            lambda: composition.move_pin(DESTINATION, version),
        )
    )
    planned.append(
        Action(f"plan {DESTINATION} at composition {version}", lambda: plan_production(production).summary())
    )
    if not plan_only:
        planned.append(Action(f"apply {DESTINATION}", lambda: _apply_summary(production)))
    return planned


def _apply_summary(production: Stack) -> str:
    result = production.apply()
    done = f"{result.added} added, {result.changed} changed, {result.removed} destroyed"
    return f"{done} ({result.seconds:.0f} s)"


def pinned(production: Stack, promotion: Promotion) -> Check:
    """Production's pin names the release staging ran, and Terraform resolved it at its last init."""
    pin = composition.pin(production.env)
    if (pin.version, pin.digest) != (promotion.version, promotion.digest):
        return False, f"{pin.describe()}, not {promotion.version} ({promotion.digest[:12]})"
    data_dir = production.terraform.data_dir or production.root / ".terraform"
    resolved = resolved_composition(production.root, data_dir)
    if resolved is None or composition.digest(resolved) != promotion.digest:
        return False, f"Terraform's last init in {production.env} resolved {resolved}, not the pinned release"
    return True, pin.describe()


def applied(production: Stack, promotion: Promotion) -> Check:
    """Production's state says it was applied from the promoted release."""
    found = production.outputs().get("composition")
    wanted = {"version": promotion.version, "digest": promotion.digest}
    if found != wanted:
        return False, f"{production.env}'s state records composition {found}, not {wanted}"
    return True, f"{production.env} was applied from composition {promotion.version}"
