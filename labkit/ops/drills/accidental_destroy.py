"""Drill ``accidental-destroy``: someone runs ``labkit stack destroy staging`` while it serves.

The injection is that person's command, run as a separate process (``labkit stack destroy ENV
--confirm ENV``, answering its question with ``y``): Terraform destroys every resource of the
environment, load balancer and fleets included. The ``restore-environment`` runbook rebuilds it
from the code and the last good deployment (:mod:`labkit.ops.restore`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from labkit.errors import DrillError
from labkit.infra.stack import APP_ENVIRONMENTS, Stack
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.ops.restore import DEPLOYMENT_KEYS, applied_deployment, kept_states, serves_as
from labkit.target import Target

#: Seconds the destroy may take before the drill gives up on it.
DESTROY_TIMEOUT_S = 900.0


def destroy_command(target: Target, environment: str) -> list[str]:
    """The command a person types: ``labkit [--target aws --allow-spend] stack destroy ENV --confirm ENV``."""
    root = [] if target.is_sandbox else ["--target", "aws", "--region", target.region, "--allow-spend"]
    return [sys.executable, "-m", "labkit", *root, "stack", "destroy", environment, "--confirm", environment]


def inject(target: Target, environment: str, **arguments: Any) -> dict[str, Any]:
    """Destroy ``environment`` with ``labkit stack destroy`` in a process of its own; what it had."""
    if environment not in APP_ENVIRONMENTS:
        raise DrillError(
            f"accidental-destroy destroys an application environment, not {environment}.",
            hint="Use staging (or, deliberately, production).",
        )
    stack = Stack(environment, target, reporter=None)
    before = stack.deployment()
    resources = len(stack.resources())
    started = time.monotonic()
    proc = subprocess.run(
        destroy_command(target, environment),
        input="y\n",
        capture_output=True,
        text=True,
        timeout=DESTROY_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise DrillError(
            f"`labkit stack destroy {environment}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-1500:]}",
            hint="Nothing was broken on purpose; read the error, fix it, and run the drill again.",
        )
    return {
        "command": " ".join(destroy_command(target, environment)[1:]),
        "resources_before": resources,
        "resources_after": len(stack.resources()),
        "deployment_before": {k: before.get(k) for k in (*DEPLOYMENT_KEYS, "preview_color")},
        "destroy_s": round(time.monotonic() - started, 1),
        "output": proc.stdout.strip().splitlines()[-1:],
    }


def deployment_before_destroy(states: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """From states newest first: the deployment of the newest one that held resources before a
    state that held none (a destroy's); with no destroy among them, the newest deployment."""
    newest: dict[str, Any] | None = None
    destroyed = False
    for state in states:
        if not state.get("resources"):
            destroyed = True
            continue
        deployment = applied_deployment(state)
        if deployment is None:
            continue
        if destroyed:
            return deployment
        newest = newest or deployment
    return newest


def serves_what_served_before(target: Target, environment: str) -> Check:
    """The load balancer serves what the environment served before its last destroy (see
    :func:`deployment_before_destroy`), read from the state bucket's kept versions, not from
    anything the runbook wrote."""
    stack = Stack(environment, target, reporter=None)
    before = deployment_before_destroy(state for _, state in kept_states(stack))
    if before is None:
        return False, f"no kept version of {environment}'s state records a deployment"
    return serves_as(stack, before)


DRILL = Drill(
    name="accidental-destroy",
    summary="`labkit stack destroy` of the environment while it serves",
    inject=inject,
    runbook="restore-environment",
    checks={"serves-what-served-before": serves_what_served_before},
)
