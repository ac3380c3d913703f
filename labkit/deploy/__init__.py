"""The deploy layer: blue/green deployments and what gates them.

- :mod:`.controller`: the whole deployment (``Controller("staging", target).deploy("1.4.0",
  strategy=canary([10, 50, 100]))``; ``resume()``, ``abort()``, ``rollback()``, ``status()``).
- :mod:`.strategy`: strategies as data (canary, linear, all at once) with their thresholds.
- :mod:`.analysis`: the gate between steps (target health, 5xx rate, latency, alarms).
- :mod:`.ledger`: the deployments and their timed events in DynamoDB, and the deployment lock.
- :mod:`.probe`: the fixed-rate load probe that measures what users see.
- :mod:`.colors` (the color arithmetic), :mod:`.health` (waiting for health), :mod:`.marks`
  (traffic weights from the ledger's marks), :mod:`.stale` (taking over after a dead controller).

The names below load on first use, so ``labkit.deploy.strategy`` does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.deploy.colors import Color, Layout, green_weight_for, pick_idle, weight_of
    from labkit.deploy.controller import Controller, EnvironmentStatus
    from labkit.deploy.health import HealthReport, wait_healthy
    from labkit.deploy.marks import weights_from_marks

_LAZY = {
    "Color": "labkit.deploy.colors",
    "Layout": "labkit.deploy.colors",
    "green_weight_for": "labkit.deploy.colors",
    "pick_idle": "labkit.deploy.colors",
    "weight_of": "labkit.deploy.colors",
    "Controller": "labkit.deploy.controller",
    "EnvironmentStatus": "labkit.deploy.controller",
    "HealthReport": "labkit.deploy.health",
    "wait_healthy": "labkit.deploy.health",
    "weights_from_marks": "labkit.deploy.marks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Color",
    "Controller",
    "EnvironmentStatus",
    "HealthReport",
    "Layout",
    "green_weight_for",
    "pick_idle",
    "wait_healthy",
    "weight_of",
    "weights_from_marks",
]
