"""The ``lost-deploy`` drill: the deploy controller SIGKILLed in a given phase, as when the job
running ``labkit deploy`` is killed (a CI job cancelled hard, its process group killed).

The injector starts a real ``labkit deploy start ENV VERSION`` process in a session of its own (like
a CI job's step), watches the ledger, and as soon as the deployment has entered the chosen
phase sends SIGKILL to that whole process group: the controller and its heartbeat die at once, as
under ``kill -9 -PGID`` or a runner that signals the step's process group. Terraform is not in that
group: labkit runs it in a session of its own (:mod:`labkit.infra.terraform`) precisely so that an
apply under way finishes, saves the state and releases the state lock; the drill keeps it so, since
that is what labkit guarantees and what recovery must cope with (wait for the orphan, then take
over). A kill that takes Terraform too (a lost host, a runner or cgroup that kills every
descendant) leaves a stale state lock: that is the ``stuck-lock`` drill's case, and recovery clears
it only if the dead controller had recorded it. What is left here is an ``in_progress`` record, an
event that never ended, and a deployment lock whose holder is dead: the ``deploy-recover``
runbook resumes or aborts it. ``mid_apply=True`` kills once the phase's apply holds the state lock.

Phases: ``provision``, ``health``, ``shift:N`` (the apply of the strategy's N-th step, from 1), and
``park`` (the scale-down of the old color after the last step passed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.deploy.colors import Layout
from labkit.deploy.ledger import Deployment, Ledger
from labkit.deploy.stale import terraform_running_in
from labkit.deploy.strategy import canary
from labkit.errors import DrillError
from labkit.infra.stack import APP_ENVIRONMENTS, Stack
from labkit.ops import probes
from labkit.ops.drills import Drill
from labkit.release.build import build_release, list_releases, upload_release
from labkit.settings import PROJECT_ROOT, labkit_home
from labkit.target import Target

#: How long the deployment may take to reach the phase before the drill gives up (and kills it).
REACH_TIMEOUT_S = 600.0
_POLL_S = 0.1


def ledger_phase(phase: str, weights: list[int]) -> str:
    """The ledger's phase name for a drill ``phase`` (``shift:2`` with weights 50,100 is ``shift-100``)."""
    if phase in ("provision", "health"):
        return phase
    if phase == "park":
        return "scale-down"
    if phase.startswith("shift:") and phase[6:].isdigit() and 1 <= int(phase[6:]) <= len(weights):
        return f"shift-{weights[int(phase[6:]) - 1]}"
    steps = ", ".join(f"shift:{n}" for n in range(1, len(weights) + 1))
    raise DrillError(
        f"lost-deploy has no phase {phase!r}.",
        hint=f"Use provision, health, {steps} or park (weights {','.join(map(str, weights))}).",
    )


def _order(weights: list[int]) -> list[str]:
    """The ledger phases of a deployment in the order the controller enters them."""
    shifts = [p for w in weights for p in (f"shift-{w}", f"analysis-{w}")]
    return ["started", "lock", "provision", "health", "preview", *shifts, "scale-down"]


def pick_version(target: Target, stack: Stack, layout: Layout) -> str:
    """The newest plain release (no ``-suffix``) in the artifact bucket that does not serve now;
    when there is none, the serving one's next patch version, built and uploaded (a healthy build of
    this checkout), so the drill also runs on a stack that holds a single release."""
    serving = layout.serving
    current = layout.versions[serving] if serving else layout.versions["blue"]
    bucket = stack.names.artifact_bucket
    plain = [v for v in list_releases(target, bucket) if "-" not in v and v != current]
    if plain:
        return max(plain, key=_version_key)
    major, minor, patch = _version_key(current.split("-")[0])
    version = f"{major}.{minor}.{patch + 1}"
    upload_release(target, bucket, build_release(version), version)
    return version


def _version_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = [*(int(p) if p.isdigit() else 0 for p in version.split(".")), 0, 0, 0][:3]
    return major, minor, patch


def inject(
    target: Target,
    environment: str,
    *,
    phase: str = "shift:1",
    version: str | None = None,
    weights: str = "50,100",
    bake: float = 3.0,
    scale_down_delay: float = 1.0,
    health_timeout: float = 90.0,
    mid_apply: bool = False,
) -> dict[str, Any]:
    """Start a real ``labkit deploy start`` of ``version`` and SIGKILL it once it entered ``phase``
    (with ``mid_apply``, once that phase's Terraform apply also holds the state lock: the apply
    then finishes on its own after the kill)."""
    if environment not in APP_ENVIRONMENTS:
        raise DrillError(
            f"{environment!r} takes no deployments.", hint=f"Use one of: {', '.join(APP_ENVIRONMENTS)}."
        )
    steps = [int(w) for w in str(weights).split(",")]
    canary(steps)  # refuses bad weights before anything starts
    wanted = ledger_phase(phase, steps)
    if mid_apply and wanted == "health":
        raise DrillError("The health phase runs no Terraform apply.", hint="Use mid_apply only with "
                         "provision, shift:N or park.")  # fmt: skip
    stack = Stack(environment, target, reporter=None)
    ledger = Ledger(target, stack.names.ledger_table)
    if (holder := ledger.lock_holder(environment)) is not None or ledger.active(environment) is not None:
        raise DrillError(
            f"{environment} already has a deployment in progress or locked"
            + (f" ({holder.describe()})" if holder else "")
            + "; the drill needs a settled environment.",
            hint=f"Recover it first: `labkit runbook run deploy-recover -p environment {environment} "
            f"-p dry_run False -p confirm {environment}`.",
        )
    layout = Layout.from_outputs(stack.deployment())
    version = version or pick_version(target, stack, layout)
    log = (
        labkit_home()
        / "drills"
        / f"lost-deploy-{datetime.now(UTC):%Y%m%dT%H%M%S}-{phase.replace(':', '')}.log"
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "labkit", *_target_options(target), "deploy", "start", environment, version,
        "--weights", ",".join(map(str, steps)), "--bake", f"{bake:g}",
        "--scale-down-delay", f"{scale_down_delay:g}", "--health-timeout", f"{health_timeout:g}",
    ]  # fmt: skip
    with log.open("w") as out:
        # A session of its own, as a CI job's step: the kill below reaches it and its group only.
        proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
            start_new_session=True,
        )  # fmt: skip
    try:
        record = _wait_for_phase(ledger, environment, proc, wanted, _order(steps), log)
        if mid_apply:
            _wait_for_apply(stack, proc, log)
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        proc.wait(timeout=30)  # reaped: a zombie's pid would still look alive to the runbook
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    survivors = terraform_running_in(stack.terraform.data_dir) if stack.terraform.data_dir else []
    return {
        "phase": phase,
        "ledger_phase": wanted,
        "deployment_id": record.id,
        "version": version,
        "from_color": record.from_color,
        "to_color": record.to_color,
        "step_index": record.step_index,
        "weight": record.weight,
        "pid": proc.pid,
        "killed_at": killed_at.isoformat(),
        "terraform_still_applying": survivors,
        "log": str(log),
    }


def _target_options(target: Target) -> list[str]:
    """The root options that make the child labkit use ``target`` (the sandbox it finds itself)."""
    if target.is_sandbox:
        return ["--target", "sandbox"]
    options = ["--target", "aws", "--region", target.region]
    if target.profile:
        options += ["--profile", target.profile]
    return [*options, "--allow-spend"] if target.allow_spend else options


def _wait_for_phase(
    ledger: Ledger, environment: str, proc: subprocess.Popen[bytes], wanted: str, order: list[str], log: Path
) -> Deployment:
    """The child's deployment record once its phase is ``wanted``; DrillError if it ends or passes it."""
    deadline = time.monotonic() + REACH_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise DrillError(
                f"`labkit deploy` exited ({proc.returncode}) before its deployment reached {wanted}.",
                hint=f"Its output is in {log}:\n{log.read_text()[-1500:]}",
            )
        holder = ledger.lock_holder(environment)
        if holder is not None and holder.pid == proc.pid and holder.deployment_id:
            record = _record(ledger, holder.deployment_id)
            if record is not None:
                if record.phase == wanted:
                    return record
                if record.phase in order and order.index(record.phase) > order.index(wanted):
                    raise DrillError(
                        f"The deployment passed {wanted} (now in {record.phase}) before the drill saw it.",
                        hint="Give that phase more time: a longer bake or scale-down delay.",
                    )
        if time.monotonic() > deadline:
            raise DrillError(
                f"`labkit deploy` did not reach {wanted} in {REACH_TIMEOUT_S:g} s.",
                hint=f"Its output is in {log}.",
            )
        time.sleep(_POLL_S)


def _wait_for_apply(stack: Stack, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until a Terraform of ``stack`` runs and holds its state lock (the phase's apply)."""
    deadline = time.monotonic() + REACH_TIMEOUT_S
    data_dir = stack.terraform.data_dir
    while not (data_dir and terraform_running_in(data_dir) and stack.state_lock() is not None):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DrillError(
                "`labkit deploy` " + ("exited" if proc.poll() is not None else "ran no apply") + " before "
                "its Terraform apply took the state lock.",
                hint=f"Its output is in {log}.",
            )
        time.sleep(_POLL_S)


def _record(ledger: Ledger, deployment_id: str) -> Deployment | None:
    try:
        return ledger.get(deployment_id)
    except Exception:  # the lock is taken a moment before the record is written
        return None


# -- checks no runbook wrote -------------------------------------------------------------------


def traffic_on_one_color(target: Target, environment: str) -> tuple[bool, str]:
    """The listener (read from ELBv2) sends all traffic to one color, the one the ledger's latest
    deployment left serving, and that color has instances."""
    stack = Stack(environment, target, reporter=None)
    outputs = stack.outputs()
    live = probes.live_green_weight(
        target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"])
    )
    if live not in (0, 100):
        return False, f"the listener gives green {live}%"
    color = "green" if live == 100 else "blue"
    latest = Ledger(target, stack.names.ledger_table).list(environment)[:1]
    if latest:
        d = latest[0]
        expected = d.to_color if d.status == "succeeded" else d.from_color
        if d.status == "in_progress" or expected != color:
            return (
                False,
                f"the listener serves {color}, the ledger's latest deployment ({d.status}) says {expected}",
            )
    capacity = int((outputs.get("deployment") or {}).get(f"{color}_capacity", 0))
    if capacity < 1:
        return False, f"{color} takes all traffic with no instances"
    return True, f"{color} takes 100% on {capacity} instance(s), as the ledger says"


def no_state_lock(target: Target, environment: str) -> tuple[bool, str]:
    """Terraform's state lock is free (read from the backend)."""
    lock = Stack(environment, target, reporter=None).state_lock()
    return (True, "free") if lock is None else (False, f"held by {lock.get('Who')} ({lock.get('ID')})")


DRILL = Drill(
    name="lost-deploy",
    summary="the deploy controller SIGKILLed mid-deployment (phase: provision, health, shift:N, park)",
    inject=inject,
    runbook="deploy-recover",
    checks={"traffic-on-one-color": traffic_on_one_color, "no-state-lock": no_state_lock},
)
