"""The drills: one module per drill, each defining ``DRILL`` (a :class:`Drill`), found by
:func:`all_drills`. :mod:`labkit.ops.drill` runs them.

The type lives here rather than beside the runner so that a drill's module depends on this
package alone, and the runner on the drills, never the reverse.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.ops.probes import STEADY_STATE, Check
from labkit.target import Target

CheckFn = Callable[[Target, str], Check]


@dataclass(frozen=True)
class Drill:
    """One disaster: how to inject it, which runbook recovers it, what proves it recovered.

    ``inject(target, environment, **arguments)`` breaks the environment and returns what it did
    (JSON-able facts). ``runbook`` is None when the drill has nothing to recover (the injection's
    outcome is the lesson, as for concurrent applies); ``runbook_parameters`` turns the facts into
    the runbook's own parameters. ``checks`` join the steady state; ``steady_state`` names the
    common checks that apply (all by default).
    """

    name: str
    summary: str
    inject: Callable[..., dict[str, Any]]
    runbook: str | None
    checks: Mapping[str, CheckFn] = field(default_factory=dict)
    runbook_parameters: Callable[[dict[str, Any]], dict[str, Any]] = lambda facts: {}
    steady_state: tuple[str, ...] = tuple(STEADY_STATE)
    #: The environment the runbook acts on (and ``confirm`` names), when it is not the one the drill
    #: breaks: a change applied to staging alone is mended by promoting it to production.
    runbook_environment: str | None = None


def all_drills() -> dict[str, Drill]:
    """Every drill in this package, by name."""
    found: dict[str, Drill] = {}
    for module in pkgutil.iter_modules(__path__):
        drill = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DRILL", None)
        if isinstance(drill, Drill):
            found[drill.name] = drill
    return dict(sorted(found.items()))
