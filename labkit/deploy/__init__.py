"""Blue/green deployments: the controller (:mod:`.controller`), the color arithmetic (:mod:`.colors`),
waiting for health (:mod:`.health`) and taking over after a dead controller (:mod:`.stale`).

``Controller("staging", target).deploy("1.4.0", strategy=canary([10, 50, 100]))`` is the whole
deployment; ``resume()``, ``abort()``, ``rollback()`` and ``status()`` the rest of ``labkit deploy``.
"""

from __future__ import annotations

from labkit.deploy.colors import Color, Layout, green_weight_for, pick_idle, weight_of
from labkit.deploy.controller import Controller, EnvironmentStatus
from labkit.deploy.health import HealthReport, wait_healthy
from labkit.deploy.marks import weights_from_marks

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
