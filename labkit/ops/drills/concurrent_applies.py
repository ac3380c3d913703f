"""Drill ``concurrent-applies``: two real ``labkit stack apply`` processes started together on one
environment, with the same change. Terraform's state lock lets exactly one apply; the other fails on
the lock, naming who holds it; the state's serial rises by one; nothing is half-applied.

There is no runbook: the outcome is the check, and :func:`inject` raises a DrillError when it is
not as above. The steady state after (a plan with no changes) shows nothing was left half-done.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.lab.run import runs_root
from labkit.ops.drills import Drill
from labkit.ops.drills._apply import preview_change, start_apply, wait_until
from labkit.target import Target

#: `labkit` exits with this when a lock is held by someone else (labkit.cli.context.ExitCode.LOCKED).
EXIT_LOCKED = 4


def _serial(stack: Stack) -> tuple[str, int]:
    config = stack.backend_config(locking=False)
    try:
        body = stack.target.client("s3").get_object(Bucket=config["bucket"], Key=config["key"])["Body"].read()
        state = json.loads(body)
        return str(state["lineage"]), int(state["serial"])
    except (ClientError, ValueError, KeyError, TypeError) as exc:
        raise DrillError(
            f"{stack.env}'s state object does not read as a state ({type(exc).__name__}).",
            hint=f"Recover it first: `labkit runbook run restore-state -p environment {stack.env}`.",
        ) from exc


def inject(target: Target, environment: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the two applies to their end; the outcome (raises DrillError unless exactly one applied)."""
    stack = Stack(environment, target, reporter=None)
    lineage, before = _serial(stack)
    change = preview_change(stack)
    folder = runs_root() / "drills" / "logs"
    logs = [folder / f"concurrent-applies-{environment}-{n}.log" for n in (1, 2)]
    procs = [start_apply(target, environment, change, log) for log in logs]
    try:
        wait_until(
            "both applies to end", lambda: all(p.poll() is not None for p in procs), timeout_s, every_s=0.2
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # labkit passes it on to Terraform as its graceful stop
                proc.wait()
    codes = [p.returncode for p in procs]
    outputs = [log.read_text(errors="replace") for log in logs]
    after_lineage, after = _serial(stack)
    facts: dict[str, Any] = {
        "variables": change,
        "exit_codes": codes,
        "serial_before": before,
        "serial_after": after,
        "logs": [str(log) for log in logs],
    }
    if sorted(codes) != [0, EXIT_LOCKED]:
        raise DrillError(
            f"Expected one apply to succeed and the other to fail on the state lock; exit codes {codes}.",
            hint=f"Read their output: {', '.join(map(str, logs))}.",
        )
    loser = outputs[codes.index(EXIT_LOCKED)]
    facts["winner"] = codes.index(0) + 1
    facts["refusal"] = [
        line.strip() for line in loser.splitlines() if line.strip().startswith(("ID:", "Who:"))
    ]
    if "Error acquiring the state lock" not in loser or len(facts["refusal"]) < 2:
        raise DrillError(
            "The apply that failed does not name the state lock's holder (ID and Who).",
            hint=f"Read its output: {logs[codes.index(EXIT_LOCKED)]}.",
        )
    if after_lineage != lineage or after != before + 1:
        raise DrillError(
            f"The state went from {lineage} serial {before} to {after_lineage} serial {after}, "
            "not up by one.",
            hint="One apply writes the state once; read both logs: " + ", ".join(map(str, logs)),
        )
    applied = stack.deployment()
    if any(applied.get(name) != value for name, value in change.items()):
        raise DrillError(
            f"The deployment in state is {applied}, not the change both applies made ({change}).",
            hint="The winning apply did not finish; read its log.",
        )
    return facts


DRILL = Drill(
    name="concurrent-applies",
    summary="two applies of one environment started together: one applies, one fails on the lock",
    inject=inject,
    runbook=None,
)
