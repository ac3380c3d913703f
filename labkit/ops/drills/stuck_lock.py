"""Drill ``stuck-lock``: a real ``labkit stack apply`` killed with SIGKILL (it and its Terraform) once
it holds the state lock, as when a CI runner or a laptop dies mid-apply; Terraform's lock stays
behind. ``unlock-state`` proves the holder gone and force-unlocks it by ID."""

from __future__ import annotations

import socket
from typing import Any

from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.lab.run import runs_root
from labkit.ops.drills import Drill
from labkit.ops.drills._apply import kill_apply, preview_change, start_apply, wait_until
from labkit.ops.probes import Check
from labkit.target import Target


def inject(target: Target, environment: str, *, timeout_s: float = 300.0) -> dict[str, Any]:
    """Start the apply, SIGKILL it once it holds the state lock; the lock it left and what was killed."""
    stack = Stack(environment, target, reporter=None)
    if (held := stack.state_lock()) is not None:
        raise DrillError(
            f"{environment}'s state is locked already ({held.get('ID')}, {held.get('Who')}).",
            hint="Clear it first: `labkit runbook run unlock-state -p environment " + environment + "`.",
        )
    change = preview_change(stack)
    log = runs_root() / "drills" / "logs" / f"stuck-lock-{environment}-apply.log"
    proc = start_apply(target, environment, change, log)
    try:
        wait_until(
            f"the apply (pid {proc.pid}, log {log}) to take the state lock",
            lambda: proc.poll() is not None or stack.state_lock() is not None,
            timeout_s,
        )
    except DrillError:
        kill_apply(proc, stack)
        raise
    if proc.returncode is not None:
        raise DrillError(
            f"The apply ended (exit {proc.returncode}) before it held the state lock.",
            hint=f"Its output: {log}",
        )
    killed = kill_apply(proc, stack)
    lock = stack.state_lock()
    if lock is None:
        raise DrillError(
            "The killed apply left no state lock (it released it before the kill landed).",
            hint="Run the drill again.",
        )
    return {
        "lock_id": lock.get("ID"),
        "who": lock.get("Who"),
        "operation": lock.get("Operation"),
        "created": lock.get("Created"),
        "host": socket.gethostname(),
        "killed_pids": killed,
        "variables": change,
        "log": str(log),
    }


def state_unlocked(target: Target, environment: str) -> Check:
    """Nobody holds the environment's Terraform state lock (read from the backend)."""
    lock = Stack(environment, target, reporter=None).state_lock()
    if lock is not None:
        return False, f"locked: {lock.get('ID')} by {lock.get('Who')} ({lock.get('Operation')})"
    return True, "no state lock"


DRILL = Drill(
    name="stuck-lock",
    summary="an apply killed with SIGKILL while it held the state lock",
    inject=inject,
    runbook="unlock-state",
    checks={"state-unlocked": state_unlocked},
)
