"""Recovering a deployment whose controller is gone (a killed CI job, a lost host): the logic of the
``deploy-recover`` runbook.

- :func:`diagnose` only reads: the ledger's deployment in progress (phase, step, weight, the event
  it died in), the deployment lock and whether its holder is provably gone
  (:func:`labkit.deploy.stale.holder_gone`), Terraform's state lock and any Terraform the dead
  controller left applying, the listener's live weights (ELBv2) and the new color's health.
- :func:`choose` picks what to do, by the ledger's state (``decision="auto"``), see :data:`RULE`;
  ``decision="resume"`` or ``"abort"`` overrides it.
- :func:`actions` are the runbook's Plan: the controller's own ``resume`` or ``abort``
  (:class:`labkit.deploy.controller.Controller`), which take the lock over from the dead controller,
  wait for its Terraform and clear only the state lock it recorded. Nothing here changes the stack
  by another path.
- :func:`checks` are the runbook's Verify: one color serves 100 % (ELBv2, the state and the
  ledger agree), no deployment lock, no state lock, the deployment record final.

A second run finds nothing in progress and plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from labkit.deploy import colors
from labkit.deploy.colors import Color, Layout
from labkit.deploy.controller import Controller
from labkit.deploy.health import HealthReport, check
from labkit.deploy.ledger import FINAL_STATUSES, Deployment, Event, Ledger, LockHolder, default_owner
from labkit.deploy.stale import (
    break_lock,
    controller_alive,
    holder_gone,
    refuse_live,
    same_lock,
    terraform_running_in,
)
from labkit.errors import ConfigError, DeployError, DeploymentLockedError
from labkit.infra.stack import Stack
from labkit.ops.probes import live_green_weight
from labkit.ops.runbook import Action

Decision = Literal["auto", "resume", "abort"]
DECISIONS: tuple[Decision, ...] = ("auto", "resume", "abort")
Move = Literal["resume", "abort", "release-lock"]

#: The phases before any traffic moves to the new color (the controller's order).
BEFORE_TRAFFIC = ("started", "lock", "provision", "health", "preview")

#: How ``decision="auto"`` chooses, as the runbook and the docs state it.
RULE = (
    "before any traffic moved (phases up to health/preview) -> abort: the old color still serves "
    "100 %, only the new one is parked; "
    "mid-shift (shift-W/analysis-W) with every new instance healthy -> resume: the remaining steps "
    "run behind the same gate, which still rolls a bad release back; "
    "mid-shift with the new color unhealthy -> abort; "
    "scale-down (the new color already serves 100 % and passed its last gate) -> resume: it only "
    "parks the old color; "
    "a rollback in progress -> abort: it finishes that rollback; "
    "a lock without a record (killed before recording) -> release the lock: nothing had changed"
)


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` read. ``record`` is the deployment in progress (None: none)."""

    environment: str
    record: Deployment | None
    last_event: Event | None
    lock: LockHolder | None
    #: Why the controller is provably gone, or None while it may still run (or nothing is in progress).
    gone: str | None
    state_lock: dict[str, Any] | None
    #: The state lock is the one the stopped controller recorded (only that one is ever cleared).
    state_lock_recorded: bool
    #: Terraform processes still applying in this stack's data dir (left by the dead controller).
    terraform_pids: tuple[int, ...]
    layout: Layout
    live_green_weight: int | None
    new_color: HealthReport | None

    @property
    def in_progress(self) -> bool:
        return self.record is not None or self.lock is not None

    def lines(self) -> list[str]:
        env = self.environment
        out: list[str] = []
        if self.record is None:
            out.append(f"{env}: no deployment in progress")
        else:
            d = self.record
            steps = len(d.strategy.steps)
            out.append(
                f"{env}: deployment {d.id} in progress: {d.from_version or '?'} ({d.from_color}) -> "
                f"{d.version} ({d.to_color}), phase {d.phase}, step {d.step_index + 1}/{steps}, "
                f"{d.to_color} at {d.weight}% by the ledger; by {d.who}"
            )
            if self.last_event is not None and self.last_event.ended_at is None:
                out.append(
                    f"  it stopped in {self.last_event.phase!r} (started "
                    f"{self.last_event.started_at:%H:%M:%S} UTC, never ended)"
                )
        if self.lock is None:
            out.append("deployment lock: free")
        else:
            out.append(f"deployment lock: {self.lock.describe()}")
        if self.in_progress:
            out.append(
                f"  its controller is gone: {self.gone}"
                if self.gone
                else "  its controller may still be running: not a lost deployment (yet)"
            )
        pids = ", ".join(map(str, self.terraform_pids))
        if self.state_lock is None:
            out.append("Terraform state lock: free")
        else:
            lock = self.state_lock
            out.append(
                f"Terraform state lock: {lock.get('ID')} by {lock.get('Who')} ({lock.get('Operation')}, "
                f"since {lock.get('Created')})"
            )
            if self.terraform_pids:
                out.append(f"  held by the Terraform still applying (pid {pids}); it releases it when done")
            elif self.state_lock_recorded:
                out.append("  stale, and the one the stopped controller recorded: resume/abort clears it")
            else:
                out.append("  stale, and NOT recorded by the stopped controller: it is left alone")
        if self.terraform_pids:
            out.append(
                f"Terraform (pid {pids}) is still applying, left by the stopped controller: recovery "
                "first waits for it to finish"
            )
        live = "?" if self.live_green_weight is None else f"{self.live_green_weight}%"
        out.append(f"stack (Terraform state): {self.layout.describe()}; listener (ELBv2): green at {live}")
        if self.record is not None and self.new_color is not None:
            out.append(f"new color {self.record.to_color}: {self.new_color.describe()}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True)
class Choice:
    """What to do and why. ``move`` None: nothing is in progress."""

    move: Move | None
    why: str
    deployment_id: str | None = None

    def __str__(self) -> str:
        return f"{self.move or 'nothing'}: {self.why}"


def diagnose(stack: Stack) -> Diagnosis:
    """Read everything the choice needs from ``stack`` (the runbook's: initialised once); changes
    nothing."""
    target, environment = stack.target, stack.env
    ledger = Ledger(target, stack.names.ledger_table)
    lock = ledger.lock_holder(environment)
    record = ledger.active(environment)
    gone: str | None = None
    if lock is not None:
        gone = holder_gone(lock)
    elif record is not None and controller_alive(record.who) is False:
        gone = f"its process ({record.who}) has exited; its lock was cleared"
    events = ledger.events(record.id) if record is not None else []
    state_lock = stack.state_lock()
    recorded = bool(
        state_lock is not None
        and record is not None
        and record.terraform_lock
        and same_lock({k: str(v) for k, v in state_lock.items()}, record.terraform_lock)
    )
    pids = tuple(terraform_running_in(stack.terraform.data_dir)) if stack.terraform.data_dir else ()
    outputs = stack.outputs()
    layout = Layout.from_outputs(outputs.get("deployment") or {})
    live = live_green_weight(target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"]))
    health: HealthReport | None = None
    if record is not None:
        to = colors.as_color(record.to_color)
        health = check(
            target,
            asg_name=str(outputs[f"{to}_asg_name"]),
            target_group_arn=str(outputs[f"{to}_target_group_arn"]),
            wanted=max(layout.capacities[to], 1),
        )
    return Diagnosis(
        environment=environment,
        record=record,
        last_event=events[-1] if events else None,
        lock=lock,
        gone=gone,
        state_lock=state_lock,
        state_lock_recorded=recorded,
        terraform_pids=pids,
        layout=layout,
        live_green_weight=live,
        new_color=health,
    )


def choose(diagnosis: Diagnosis, decision: str = "auto") -> Choice:
    """Resume, abort or release the lock, by :data:`RULE` (``decision="auto"``) or as overridden.

    Refuses (:class:`~labkit.errors.DeploymentLockedError`) while the controller may still run: a
    deployment in progress is not lost until its controller is proven gone.
    """
    if decision not in DECISIONS:
        raise ConfigError(
            f"decision is {decision!r}.", hint=f"Set decision to one of: {', '.join(DECISIONS)}."
        )
    env = diagnosis.environment
    record = diagnosis.record
    if not diagnosis.in_progress:
        return Choice(None, f"no deployment of {env} is in progress and its deployment lock is free")
    if diagnosis.gone is None:
        if diagnosis.lock is not None:
            raise refuse_live(diagnosis.lock, f"recover the deployment of {env}")
        assert record is not None
        raise DeploymentLockedError(
            f"Deployment {record.id}'s lock was cleared, and it cannot be told whether its controller "
            f"({record.who}) still runs.",
            hint=f"Make sure it is stopped, then `labkit deploy abort {env} --force` or "
            f"`labkit deploy resume {env} --force`.",
        )
    if record is None:
        if decision != "auto":
            raise DeployError(
                f"{env} is locked by a controller that died before recording a deployment: there is "
                f"nothing to {decision}.",
                hint="Run with decision='auto': it releases the lock.",
            )
        return Choice("release-lock", "the controller died before recording its deployment: nothing changed")
    if (
        diagnosis.state_lock is not None
        and not diagnosis.terraform_pids
        and not diagnosis.state_lock_recorded
    ):
        lock = diagnosis.state_lock
        raise DeployError(
            f"{env}'s Terraform state is locked ({lock.get('ID')} by {lock.get('Who')}), no Terraform runs "
            "here, and it is not the lock the stopped controller recorded, so neither resume nor abort "
            "may clear it.",
            hint="Run the unlock-state runbook (it proves the holder gone and unlocks by ID), then this "
            "one again.",
        )
    phase = record.phase
    if decision == "resume" and phase.startswith("rollback") and record.step_index < 0:
        raise DeployError(
            f"Deployment {record.id} was rolling back ({phase}) when its controller stopped; resuming "
            "would deploy the release it was rolling back.",
            hint="Run with decision='abort' (or 'auto'): it finishes the rollback.",
        )
    if decision != "auto":
        return Choice(decision, f"decision={decision!r} given (phase {phase})", record.id)
    healthy = diagnosis.new_color is not None and diagnosis.new_color.ready
    if phase.startswith("rollback"):
        return Choice("abort", f"it was rolling back ({phase}): abort finishes the rollback", record.id)
    if phase == "scale-down":
        return Choice(
            "resume", f"{record.to_color} already serves 100 % and passed its gate: resume parks "
            f"{record.from_color}", record.id,
        )  # fmt: skip
    if phase in BEFORE_TRAFFIC or record.step_index < 0:
        return Choice(
            "abort", f"no traffic had moved (phase {phase}): {record.from_color} still serves all of it; "
            f"abort parks {record.to_color}", record.id,
        )  # fmt: skip
    if healthy:
        return Choice(
            "resume", f"mid-shift ({phase}, {record.to_color} at {record.weight}%) and {record.to_color} "
            "is healthy: resume runs the remaining steps behind the gate", record.id,
        )  # fmt: skip
    return Choice(
        "abort", f"mid-shift ({phase}) but {record.to_color} is not healthy: abort gives "
        f"{record.from_color} all traffic back", record.id,
    )  # fmt: skip


def act(stack: Stack, choice: Choice, *, say: Callable[[str], None] = print) -> str:
    """Carry out ``choice`` through the controller's own resume or abort; what it ended with."""
    if choice.move is None:
        return "nothing to do"
    target, environment = stack.target, stack.env
    if choice.move == "release-lock":
        ledger = Ledger(target, stack.names.ledger_table)
        released = break_lock(ledger, environment, f"deploy-recover runbook {default_owner()}")
        return f"released the lock of {released}" if released else "the lock was already free"
    controller = Controller(environment, target, say=say)
    if choice.move == "resume":
        done = controller.resume()
    else:
        done = controller.abort(reason=f"deploy-recover runbook: {choice.why}")
    return f"deployment {done.id} {done.status}: {done.reason}"


def actions(stack: Stack, diagnosis: Diagnosis, choice: Choice) -> list[Action]:
    """The Plan: one action, or none when nothing is in progress."""
    environment = stack.env
    if choice.move is None:
        return []
    record = diagnosis.record
    if choice.move == "release-lock":
        assert diagnosis.lock is not None
        text = f"Release {environment}'s deployment lock held by {diagnosis.lock.owner} ({diagnosis.gone})"
        return [Action(text, lambda: act(stack, choice), lock_only=True)]
    assert record is not None
    if choice.move == "resume":
        text = (
            f"Resume deployment {record.id} ({record.version} to {record.to_color}) from phase "
            f"{record.phase}: {choice.why}"
        )
    else:
        text = (
            f"Abort deployment {record.id}: all traffic to {record.from_color} "
            f"({record.from_version or '?'}), {record.to_color} parked: {choice.why}"
        )
    return [Action(text, lambda: act(stack, choice))]


# -- Verify ------------------------------------------------------------------------------------

Check = Callable[[], tuple[bool, str]]


def one_color_serves(stack: Stack, deployment_id: str | None = None) -> tuple[bool, str]:
    """Exactly one color takes 100 %: the listener (ELBv2), the applied state and the ledger's
    deployment (``deployment_id``, else the latest) agree on which, and it has instances."""
    target = stack.target
    outputs = stack.outputs()
    layout = Layout.from_outputs(outputs.get("deployment") or {})
    live = live_green_weight(target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"]))
    serving: Color | None = {0: "blue", 100: "green"}.get(live) if live is not None else None  # type: ignore[assignment]
    if serving is None:
        return False, f"the listener splits traffic: green at {live}%"
    if layout.green_weight != live:
        return False, f"the listener gives green {live}%, the state {layout.green_weight}%"
    if layout.capacities[serving] < 1:
        return False, f"{serving} takes all traffic but has no instances ({layout.describe()})"
    ledger = Ledger(target, stack.names.ledger_table)
    records = [ledger.get(deployment_id)] if deployment_id else ledger.list(stack.env)[:1]
    if records:
        d = records[0]
        wanted = d.to_color if d.status == "succeeded" else d.from_color
        if d.status in FINAL_STATUSES and wanted != serving:
            return False, f"deployment {d.id} ended {d.status}, so {wanted} should serve, but {serving} does"
    return True, f"{serving} {layout.versions[serving]} serves 100% (listener and state agree)"


def no_deployment_lock(stack: Stack) -> tuple[bool, str]:
    holder = Ledger(stack.target, stack.names.ledger_table).lock_holder(stack.env)
    return (True, "free") if holder is None else (False, f"held by {holder.describe()}")


def no_state_lock(stack: Stack) -> tuple[bool, str]:
    lock = stack.state_lock()
    if lock is None:
        return True, "free"
    return False, (
        f"held: {lock.get('ID')} by {lock.get('Who')} ({lock.get('Operation')}); if nothing runs, the "
        "unlock-state runbook clears it"
    )


def record_final(stack: Stack, deployment_id: str | None) -> tuple[bool, str]:
    """The recovered deployment (``deployment_id``) ended, and nothing else is in progress."""
    ledger = Ledger(stack.target, stack.names.ledger_table)
    if (active := ledger.active(stack.env)) is not None:
        return False, f"deployment {active.id} is still in progress (phase {active.phase})"
    if deployment_id is None:
        return True, "no deployment in progress"
    d = ledger.get(deployment_id)
    return d.status in FINAL_STATUSES, f"deployment {d.id} {d.status}: {d.reason}"


def checks(stack: Stack, diagnosis: Diagnosis) -> list[tuple[str, Check]]:
    """The Verify section's checks, each ``(what, check)`` for ``rb.verify``."""
    dep = diagnosis.record.id if diagnosis.record is not None else None
    return [
        ("Exactly one color serves 100 % (ELBv2 listener, state and ledger agree)",
         lambda: one_color_serves(stack, dep)),
        ("No deployment lock", lambda: no_deployment_lock(stack)),
        ("No Terraform state lock", lambda: no_state_lock(stack)),
        ("The deployment record is final, nothing in progress", lambda: record_final(stack, dep)),
    ]  # fmt: skip
