"""The deploy controller: a release onto the idle color, traffic shifted step by step behind a gate.

One :class:`Controller` per environment and target. Its public calls (also exported from
:mod:`labkit.deploy`) are :meth:`~Controller.deploy`, :meth:`~Controller.resume`,
:meth:`~Controller.abort`, :meth:`~Controller.rollback` and :meth:`~Controller.status`.

A deployment, phase by phase, each a timed event in the ledger (``labkit ledger ENV --show ID``):

1. ``lock``: the environment's deployment lock (a conditional write); a second deploy is refused.
   The lock is fenced: its token guards every ledger write and every apply, a background thread
   renews its heartbeat, and a controller whose lock was taken over stops before its next apply.
2. ``provision``: the idle color gets the release and the serving color's capacity (a Terraform
   apply; the preview header now reaches it).
3. ``health``: every new instance healthy in the target group, within the strategy's health
   timeout; otherwise roll back before any weight moves. Then ``migrate-expand`` (only with a
   database): the release's own migrations up to its revision, short of any contract step
   (``python -m app.migrations expand``), right before the release takes traffic.
4. ``preview`` (optional): requests with the preview header must all succeed on the new release.
5. ``shift-W``: a Terraform apply of ``green_weight`` giving the new color W percent, then
   ``analysis-W``: the bake, with the gate (:mod:`labkit.deploy.analysis`) polled throughout so a bad
   release is caught as soon as there is evidence, and a final verdict at the end of the bake.
   From the first step on, the controller sends its own check traffic to the new color (the
   strategy's ``check_rate``, with the preview header so it reaches the new color at any weight,
   as Flagger's load tester does), so every gate has evidence even with no user traffic. A bake
   that ends without enough evidence holds up to :data:`INCONCLUSIVE_HOLD_S`, then does what the
   strategy's ``on_inconclusive`` says: roll back (the default), pause, or promote.
6. ``scale-down``: after the last step passes, the old color keeps its instances for the
   strategy's delay (an instant rollback window), then is scaled to 0. ``migrate-contract`` (only
   with a database) then runs the release's contract steps: no color runs the old code any more.

A failure at any point is a rollback. With a database, ``rollback-migrate`` first takes the schema
back to the old release's revision with the new release's migrations (the old color may fail
against a schema it cannot use, as after a breaking migration); then ``rollback-listener`` sets
the old color's weight to 100 through the ELBv2 API (sub-second: users stop reaching the new
release at once), then
``rollback`` applies the same weights with Terraform so the state, the ledger and the listener
agree, and ``rollback-park`` parks the new color; the reason is recorded. A paused deployment
stays in progress with its lock released: ``labkit deploy resume`` judges the step again,
``labkit deploy abort`` rolls it back. The record (phase, step, weight, reason) is written before
each move, so a controller killed anywhere can be resumed or aborted from it by another process.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from labkit.deploy import colors
from labkit.deploy.analysis import analyze
from labkit.deploy.colors import Color, Layout
from labkit.deploy.health import wait_healthy
from labkit.deploy.ledger import (
    Deployment,
    DeploymentStatus,
    Ledger,
    LockHolder,
    default_owner,
    new_deployment_id,
)
from labkit.deploy.listener import set_weights
from labkit.deploy.migrations import Action, EnvironmentDatabase, run_migrations
from labkit.deploy.probe import Probe
from labkit.deploy.stale import clear_stale_lock, controller_alive, holder_gone, take_over, wait_for_orphans
from labkit.deploy.strategy import Strategy, all_at_once, canary
from labkit.errors import (
    DeployError,
    DeploymentFailed,
    DeploymentLockLostError,
    LabkitError,
    MigrationError,
    StateLockedError,
)
from labkit.infra.stack import APP_ENVIRONMENTS, Stack, is_app_environment
from labkit.release.build import check_version, release_exists, release_key
from labkit.target import Target

Say = Callable[[str], None]
_Call = TypeVar("_Call", bound=Callable[..., Any])

#: How often the gate is consulted during a bake (a failure rolls back at once).
GATE_POLL_S = 1.0
#: After a bake with too little evidence to judge, how long to hold the step and keep looking
#: before the strategy's ``on_inconclusive`` decides.
INCONCLUSIVE_HOLD_S = 10.0
#: The phase of a deployment paused for want of evidence (``on_inconclusive="pause"``).
PAUSED = "paused"
#: Requests with the preview header per second during the preview.
PREVIEW_RATE = 20.0

_EARLY_PHASES = ("started", "lock", "provision", "health", "migrate-expand", "preview")
#: Phases after the last traffic step: a resumed deployment goes on from there, not from the steps.
_AFTER_STEPS = ("scale-down", "migrate-contract")


@dataclass(frozen=True)
class EnvironmentStatus:
    """What ``labkit deploy status`` shows: the stack's traffic, the lock, the latest deployment."""

    env: str
    layout: Layout
    lock: LockHolder | None
    latest: Deployment | None

    def lines(self) -> list[str]:
        out = [f"{self.env}: {self.layout.describe()}"]
        out.append(f"lock: {self.lock.describe() if self.lock else 'free'}")
        d = self.latest
        if d is None:
            out.append("no deployments recorded")
        else:
            out.append(
                f"latest: {d.id} {d.from_version or '?'} ({d.from_color}) -> {d.version} ({d.to_color}), "
                f"{d.status}, phase {d.phase}, {d.to_color} at {d.weight}%"
            )
            if d.reason:
                out.append(f"reason: {d.reason}")
            if d.status == "in_progress" and d.phase == PAUSED and self.lock is None:
                out.append(
                    f"paused: `labkit deploy resume {self.env}` judges its step again, "
                    f"`labkit deploy abort {self.env}` rolls it back"
                )
            elif d.status == "in_progress":
                if self.lock is not None and self.lock.deployment_id == d.id:
                    gone = holder_gone(self.lock)
                else:
                    gone = "its lock was cleared" if controller_alive(d.who) is False else None
                if gone is not None:
                    out.append(
                        f"its controller ({d.who}) is gone ({gone}): `labkit deploy resume {self.env}` "
                        f"continues it, `labkit deploy abort {self.env}` rolls it back"
                    )
        return out


def _renewing(call: _Call) -> _Call:
    """A public call of the controller: whatever lock it took, its heartbeat stops when it returns
    (a lock left behind by a failure then ages out, so resume and abort can prove it gone)."""

    @functools.wraps(call)
    def wrapper(self: Controller, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(self, *args, **kwargs)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()

    return cast(_Call, wrapper)


class Controller:
    """Deployments of one environment (``staging``, ``production``) on one target.

    ``say`` receives one line per phase and progress while waiting; ``terraform_lines`` also passes
    Terraform's own resource-by-resource lines to it. ``owner`` names this controller in the lock
    and the ledger (default ``user@host pid N``).
    """

    def __init__(
        self,
        env: str,
        target: Target,
        *,
        say: Say = print,
        terraform_lines: bool = False,
        owner: str | None = None,
    ) -> None:
        if not is_app_environment(env):
            raise DeployError(
                f"{env!r} is not an environment that takes deployments.",
                hint=f"Deploy to one of: {', '.join(APP_ENVIRONMENTS)}.",
            )
        self.env = env
        self.target = target
        self._say = say
        self.owner = owner or default_owner()
        self._terraform_lines = terraform_lines
        self.stack = Stack(env, target, reporter=self._terraform_line)
        self._ledger: Ledger | None = None
        self._outputs: dict[str, Any] | None = None
        self._clock = time.monotonic()
        # The deployment lock this controller holds (its token fences every write) and its heartbeat.
        self._lock: LockHolder | None = None
        self._heartbeat: _Heartbeat | None = None
        self._record_id: str | None = None
        # The stopped controller's record, whose Terraform lock this one may clear (resume, abort).
        self._taking_over_from: Deployment | None = None

    # -- public calls -------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.target, self.stack.names.ledger_table)
        return self._ledger

    def layout(self) -> Layout:
        """The deployment variables as Terraform last applied them (read afresh: another controller
        may have applied since)."""
        return Layout.from_outputs(self._read_outputs(fresh=True).get("deployment") or {})

    def status(self) -> EnvironmentStatus:
        deployments = self.ledger.list(self.env)
        return EnvironmentStatus(
            env=self.env,
            layout=self.layout(),
            lock=self.ledger.lock_holder(self.env),
            latest=deployments[0] if deployments else None,
        )

    @_renewing
    def deploy(
        self,
        version: str,
        *,
        strategy: Strategy | None = None,
        capacity: int | None = None,
        preview_requests: int = 0,
        probe: Probe | None = None,
    ) -> Deployment:
        """Deploy ``version`` to the idle color by ``strategy`` (default canary 10/50/100).

        Returns the finished record: ``succeeded`` when the release serves all traffic,
        ``rolled_back`` (with the reason) otherwise. Raises before changing anything when the
        input is wrong or the environment is locked.
        """
        strategy = strategy or canary()
        # Before anything is taken or written: a deploy launches instances.
        self.target.require_spend(f"deploy {version} to {self.env}")
        check_version(version)
        if isinstance(preview_requests, bool) or not 0 <= preview_requests <= 1000:
            raise DeployError(
                f"preview_requests is {preview_requests!r}.", hint="Use 0 (no preview) to 1000."
            )
        self.say(f"deploy {version} to {self.env} on {self.target.name}: {strategy.describe()}")
        bucket = self.stack.names.artifact_bucket
        if not release_exists(self.target, bucket, version):
            raise DeployError(
                f"Release {version} is not in the artifact bucket (s3://{bucket}/{release_key(version)}).",
                hint=f"Build and publish it first: `labkit release build {version}` (it uploads to the "
                "artifact bucket); `labkit release list` shows what is there.",
            )
        deployment_id = new_deployment_id()
        # The lock first: a second deploy is refused naming the holder, before it reads anything
        # that the first one is changing.
        holder = self._hold(self.ledger.acquire_lock(self.env, self.owner, deployment_id))
        self.say(f"lock: {self.env} locked for deployment {deployment_id}")
        try:
            active = self.ledger.active(self.env)
            if active is not None:
                raise DeployError(
                    f"Deployment {active.id} ({active.version} to {active.to_color}) is still in progress "
                    f"(phase {active.phase}, by {active.who}), though its lock was cleared.",
                    hint=f"`labkit deploy resume {self.env}` continues it; `labkit deploy abort {self.env}` "
                    "rolls it back.",
                )
            layout = self.layout()
            to = colors.pick_idle(layout)
            old = colors.other(to)
            if layout.versions[old] == version:
                raise DeployError(
                    f"Release {version} already serves all of {self.env}'s traffic (on {old}).",
                    hint="Deploy a different version; `labkit deploy status ENV` shows what runs where.",
                )
            capacity = layout.capacities[old] if capacity is None else capacity
            colors.check_capacity(to, capacity)
            record = self.ledger.start(
                self.env,
                version,
                from_color=old,
                to_color=to,
                strategy=strategy,
                who=self.owner,
                from_version=layout.versions[old],
                deployment_id=deployment_id,
                lock=holder,
            )
        except BaseException:
            self._let_go()
            raise
        self._record_id = record.id
        with self._phase(record, "lock") as event:
            event.detail = f"held by {holder.owner} since {holder.acquired_at:%H:%M:%S} UTC"
        self.say(
            f"{old} serves {layout.versions[old]}; deploying {version} to {to} "
            f"(capacity {capacity}, deployment {record.id})"
        )
        return self._run(record, capacity=capacity, preview_requests=preview_requests, probe=probe)

    @_renewing
    def resume(self, *, probe: Probe | None = None, force: bool = False) -> Deployment:
        """Continue the environment's interrupted deployment from its ledger record."""
        record = self._interrupted("resume", force=force)
        self.say(
            f"resume deployment {record.id}: {record.version} to {record.to_color}, "
            f"from phase {record.phase} (step {record.step_index + 1}/{len(record.strategy.steps)}, "
            f"{record.to_color} at {record.weight}%)"
        )
        layout = self.layout()
        self.say(f"stack: {layout.describe()}")
        to, old = colors.as_color(record.to_color), colors.as_color(record.from_color)
        capacity = max(layout.capacities[to], layout.capacities[old], 1)
        return self._run(record, capacity=capacity, preview_requests=0, probe=probe)

    @_renewing
    def abort(self, *, reason: str | None = None, force: bool = False) -> Deployment:
        """Roll back the environment's deployment whose controller is gone (or, with ``force``, hung)."""
        record = self._interrupted("abort", force=force)
        why = reason or f"aborted by {self.owner} in phase {record.phase}"
        self.say(f"abort deployment {record.id}: {why}")
        try:
            self._roll_back(record, why)
            return self._finish(record, "aborted", why)
        except BaseException as exc:
            self.say(f"abort failed: {exc}; the deployment stays in progress, locked")
            raise

    @_renewing
    def rollback(self) -> Deployment | None:
        """All traffic back on the color that served before the last deployment, in one apply.

        Recorded in the ledger as a deployment of its own. Returns None when that color already
        serves all traffic with that release.
        """
        self.target.require_spend(f"roll {self.env} back")
        history = self.ledger.list(self.env)
        if not history:
            raise DeployError(
                f"No deployment of {self.env} is recorded, so there is nothing to roll back to.",
                hint="`labkit ledger` lists the deployments.",
            )
        last = history[0]
        if last.status == "in_progress":
            raise DeployError(
                f"Deployment {last.id} is still in progress.",
                hint=f"Use `labkit deploy abort {self.env}` to roll back a deployment in progress.",
            )
        back = colors.as_color(last.from_color)
        version = last.from_version
        if version is None:
            raise DeployError(
                f"Deployment {last.id} does not record which release served before it.",
                hint="Deploy the release you want instead: `labkit deploy ENV VERSION`.",
            )
        layout = self.layout()
        away = colors.other(back)
        if layout.serving == back and layout.versions[back] == version:
            self.say(f"rollback: {back} already serves all traffic with {version}; nothing to do")
            return None
        deployment_id = new_deployment_id()
        lock = self._hold(self.ledger.acquire_lock(self.env, self.owner, deployment_id))
        try:
            record = self.ledger.start(
                self.env,
                version,
                from_color=away,
                to_color=back,
                strategy=all_at_once(bake_s=0),
                who=self.owner,
                from_version=layout.versions[away],
                deployment_id=deployment_id,
                lock=lock,
            )
        except BaseException:
            self._let_go()
            raise
        self._record_id = record.id
        self.say(f"rollback {self.env}: all traffic back to {back} ({version}), undoing {last.id}")
        try:
            return self._roll_back_to(record, layout, back, away, version, last)
        except BaseException as exc:
            self.say(f"rollback failed: {exc}; {self.env} stays locked for deployment {record.id}")
            raise

    def _roll_back_to(
        self, record: Deployment, layout: Layout, back: Color, away: Color, version: str, last: Deployment
    ) -> Deployment:
        self._restore_schema(record, code=layout.versions[away], back_to=version)
        if layout.versions[back] != version or layout.capacities[back] < 1:
            capacity = max(layout.capacities[away], 1)
            with self._phase(record, "provision") as event:
                event.detail = f"{back} {version} x{capacity}"
                self._apply(colors.bring_up(back, version, capacity))
            self._wait_healthy(record, back, capacity, record.strategy.health_timeout_s)
        with self._phase(record, "shift-100") as event:
            event.detail = f"{back} at 100%"
            self._apply({**colors.shift(back, 100), "preview_color": None})
            self._update(record, step_index=0, weight=100)
        return self._finish(
            record, "succeeded", f"rollback of deployment {last.id}: all traffic back on {back} {version}"
        )

    # -- the run ------------------------------------------------------------------------------

    def _run(
        self, record: Deployment, *, capacity: int, preview_requests: int, probe: Probe | None
    ) -> Deployment:
        to = colors.as_color(record.to_color)
        strategy = record.strategy
        try:
            try:
                if record.phase in _EARLY_PHASES or record.step_index < 0:
                    self._provision(record, to, capacity, probe)
                    # Expand once the new color is healthy, right before it takes any traffic (its
                    # preview included): a migration the old color cannot run against then breaks
                    # it for the least time before the first step's gate sees it.
                    self._migrate(record, "migrate-expand", record.version, "expand", probe=probe)
                    if preview_requests:
                        self._preview(record, to, preview_requests)
                    first, refreshed = 0, True
                else:
                    # Resumed: no apply of this run has refreshed the state yet.
                    first, refreshed = max(record.step_index, 0), False
                if record.phase not in _AFTER_STEPS and not record.phase.startswith("rollback"):
                    with self._check_traffic(record, to) as check:
                        for index in range(first, len(strategy.steps)):
                            self._step(record, index, probe, check, refresh=not refreshed)
                            refreshed = True
            except DeploymentFailed as failed:
                return self._rolled_back(record, str(failed), probe)
            except _Paused as paused:
                return self._pause(record, str(paused))
            if record.phase.startswith("rollback"):
                return self._rolled_back(record, record.reason or "rollback interrupted; finished", probe)
            self._scale_down(record, probe)
            # Contract only now: no color runs the old release's code any more.
            self._migrate(record, "migrate-contract", record.version, "upgrade")
            version = record.version
            return self._finish(
                record, "succeeded", f"{version} serves all traffic on {to}; {record.from_color} scaled to 0"
            )
        except DeploymentLockLostError:
            # Someone proved this controller gone and took over: it must change nothing more.
            raise
        except (LabkitError, KeyboardInterrupt) as exc:
            # Anything unexpected (Terraform, AWS, Ctrl-C) rolls back too: the old color is known good.
            reason = f"controller error: {exc}" if isinstance(exc, LabkitError) else "interrupted (Ctrl-C)"
            self.say(f"error: {reason.splitlines()[0]}")
            return self._rolled_back(record, reason, probe)

    def _provision(self, record: Deployment, to: Color, capacity: int, probe: Probe | None) -> None:
        self._mark(probe, "provision")
        with self._phase(record, "provision") as event:
            event.detail = f"{to} {record.version} x{capacity}"
            self.say(f"provision: {to} runs {record.version} on {capacity} instance(s)")
            self._apply(colors.bring_up(to, record.version, capacity))
        self._mark(probe, "health")
        if not self._wait_healthy(record, to, capacity, record.strategy.health_timeout_s):
            raise DeploymentFailed(self._health_reason)

    def _wait_healthy(
        self, record: Deployment, color: Color, capacity: int, timeout_s: float, phase: str = "health"
    ) -> bool:
        outputs = self._read_outputs(fresh=True)
        with self._phase(record, phase) as event:
            self.say(f"health: waiting for {capacity} healthy {color} instance(s) (timeout {timeout_s:g} s)")
            ok, report, waited = wait_healthy(
                self.target,
                asg_name=outputs[f"{color}_asg_name"],
                target_group_arn=outputs[f"{color}_target_group_arn"],
                wanted=capacity,
                timeout_s=timeout_s,
                say=self.say,
            )
            event.detail = f"{report.describe()} after {waited:.1f} s"
            self.say(f"health: {report.describe()} after {waited:.1f} s")
        if not ok:
            self._health_reason = (
                f"health timeout: {color} not healthy after {timeout_s:g} s ({report.describe()})"
            )
        return ok

    def _preview(self, record: Deployment, to: Color, requests: int) -> None:
        outputs = self._read_outputs()
        header = outputs.get("preview_header")
        if not header:
            raise DeploymentFailed("preview asked for, but the stack has no preview header")
        url = self.alb_url()
        with self._phase(record, "preview") as event:
            self.say(f"preview: {requests} requests with {header} to {url}")
            probe = Probe(url, rate=PREVIEW_RATE, duration=requests / PREVIEW_RATE, headers={header: to})
            probe.start()
            probe.wait(timeout=requests / PREVIEW_RATE + 10)
            probe.stop()
            frame = probe.results()
            wrong = frame[~frame["ok"] | (frame["color"] != to) | (frame["version"] != record.version)]
            event.detail = f"{len(frame) - len(wrong)}/{len(frame)} answered by {to} {record.version}"
            self.say(f"preview: {event.detail}")
        if len(frame) == 0 or len(wrong):
            sample = wrong.head(3)[["status", "color", "version", "error"]].to_dict("records")
            raise DeploymentFailed(f"preview failed: {event.detail}; e.g. {sample}")

    @contextmanager
    def _check_traffic(self, record: Deployment, to: Color) -> Iterator[Probe | None]:
        """The controller's own check traffic to ``to`` while the steps run (None at rate 0)."""
        rate = record.strategy.check_rate
        if rate <= 0:
            yield None
            return
        header = self._read_outputs().get("preview_header")
        url = self.alb_url()
        if header:
            self.say(f"check traffic: {rate:g} requests/s to {to} through {url} with {header}")
        else:
            self.say(f"check traffic: {rate:g} requests/s through {url} (no preview header: by the weights)")
        check = Probe(
            url,
            rate=rate,
            headers={str(header): to} if header else None,
            allow_remote=not self.target.is_sandbox,
            phase="check",
        ).start()
        try:
            yield check
        finally:
            check.stop()

    def _step(
        self, record: Deployment, index: int, probe: Probe | None, check: Probe | None, *, refresh: bool
    ) -> None:
        """Shift traffic to the step's weight, then bake behind the gate. ``refresh`` is True only for
        the first step of a resumed run (see below)."""
        to = colors.as_color(record.to_color)
        step = record.strategy.steps[index]
        self._update(record, step_index=index)  # the intent first: resume re-applies it
        self._mark(probe, f"shift-{step.weight}")
        with self._phase(record, f"shift-{step.weight}") as event:
            variables = colors.shift(to, step.weight)
            event.detail = f"{to} {step.weight}% (green_weight={variables['green_weight']})"
            # The stack has one weight variable, green's: say it, or "blue to 10%" then an apply of
            # green_weight=90 reads as a contradiction.
            self.say(
                f"shift: {to} to {step.weight}% (step {index + 1}/{len(record.strategy.steps)}):"
                f" green_weight={variables['green_weight']}, green's share of the listener"
            )
            # Without Terraform's refresh of every resource (most of this apply's time), which is safe
            # here: the state is what Terraform itself wrote moments ago, as this run's previous apply
            # (provision, or a resumed run's first step) refreshed everything; the deployment lock
            # keeps every other deploy, abort and rollback off the stack meanwhile; and the step
            # changes only the listener's weights, which the apply writes whole from configuration
            # anyway. Drift elsewhere (made outside Terraform) is neither seen nor undone by this
            # apply: the next refreshing one (scale-down, rollback) sees and reconciles it, and any
            # plan (`labkit stack plan`) shows it. The apply's own JSON carries the outputs.
            self._apply(variables, refresh=refresh)
        self._mark(probe, f"analysis-{step.weight}")  # the listener has changed only now
        self._update(record, weight=step.weight)
        self._gate(record, step.weight, step.bake_s, probe, check)

    def _gate(
        self, record: Deployment, weight: int, bake_s: float, probe: Probe | None, check: Probe | None
    ) -> None:
        """Bake ``bake_s`` seconds with the gate polled throughout; DeploymentFailed on a fail, and
        on no evidence what the strategy's ``on_inconclusive`` says (_Paused for a pause)."""
        to = colors.as_color(record.to_color)
        outputs = self._read_outputs()
        alarms = sorted((outputs.get("alarm_names") or {}).get(to, {}).values())
        # CloudWatch takes whole seconds and wants the end after the start.
        start = datetime.now(UTC).replace(microsecond=0)
        bake_end = time.monotonic() + bake_s
        hold_end = bake_end + INCONCLUSIVE_HOLD_S
        policy = record.strategy.on_inconclusive
        with self._phase(record, f"analysis-{weight}") as event:
            self.say(f"analysis: baking {bake_s:g} s at {weight}%, gate every {GATE_POLL_S:g} s")
            while True:
                now = time.monotonic()
                verdict, _ = analyze(
                    self.target,
                    record.strategy.thresholds,
                    color=to,
                    load_balancer_arn=outputs["alb_arn"],
                    target_group_arn=outputs[f"{to}_target_group_arn"],
                    start=start,
                    end=max(datetime.now(UTC).replace(microsecond=0), start) + timedelta(seconds=1),
                    alarm_names=alarms,
                    probe=probe.results() if probe is not None else None,
                    check=check.results() if check is not None else None,
                    since=record.started_at,
                    serving_color=record.from_color,
                )
                if verdict.outcome == "fail":
                    event.detail = f"fail: {verdict.reason}"
                    self.say(f"analysis: FAIL at {weight}%: {verdict.reason}")
                    raise DeploymentFailed(f"analysis failed at {to} {weight}%: {verdict.reason}")
                if now >= bake_end and verdict.outcome == "pass":
                    event.detail = f"pass: {verdict.reason}"
                    self.say(f"analysis: pass at {weight}%: {verdict.reason}")
                    return
                if now >= hold_end:
                    held = f"held {bake_s + INCONCLUSIVE_HOLD_S:g} s, on_inconclusive={policy}"
                    event.detail = f"inconclusive ({held}): {verdict.reason}"
                    self.say(f"analysis: {event.detail}")
                    why = f"no evidence to judge {to} at {weight}% ({held}): {verdict.reason}"
                    if policy == "rollback":
                        raise DeploymentFailed(why)
                    if policy == "pause":
                        raise _Paused(why)
                    return  # promote: recorded as such in the event above
                time.sleep(GATE_POLL_S)

    def _pause(self, record: Deployment, reason: str) -> Deployment:
        """Leave the deployment in progress at its step, its lock released, for resume or abort."""
        with self._phase(record, PAUSED) as event:
            event.detail = reason
        paused = self._update(record, reason=f"paused: {reason}")
        self._let_go()
        self.say(
            f"paused at {paused.to_color} {paused.weight}%: {reason}. `labkit deploy resume {self.env}` "
            f"judges this step again, `labkit deploy abort {self.env}` rolls it back; lock released"
        )
        return paused

    def _scale_down(self, record: Deployment, probe: Probe | None) -> None:
        old = colors.as_color(record.from_color)
        delay = record.strategy.scale_down_delay_s
        self._mark(probe, "scale-down")
        with self._phase(record, "scale-down") as event:
            self.say(f"scale-down: {old} keeps its instances {delay:g} s (instant rollback window)")
            time.sleep(delay)
            self._apply(colors.park(old))
            event.detail = f"{old} to 0 instances after {delay:g} s"
            self.say(f"scale-down: {old} at 0 instances")

    def _rolled_back(self, record: Deployment, reason: str, probe: Probe | None) -> Deployment:
        self._mark(probe, "rollback")
        self.say(f"rollback: {reason.splitlines()[0]}")
        self._roll_back(record, reason, probe)
        return self._finish(record, "rolled_back", reason)

    def _roll_back(self, record: Deployment, reason: str, probe: Probe | None = None) -> None:
        """Give the old color all traffic and park the new one (the old one scaled back up first if a
        scale-down had begun); ``restored`` is marked on ``probe`` once the listener sends it all."""
        self._update(record, reason=reason)
        old = colors.as_color(record.from_color)
        new = colors.as_color(record.to_color)
        if record.from_version:
            # The schema first: after a breaking migration the old color fails until it is back.
            self._restore_schema(record, code=record.version, back_to=record.from_version)
        layout = self.layout()
        if layout.capacities[old] < 1:
            capacity = max(layout.capacities[new], 1)
            with self._phase(record, "rollback-restore") as event:
                event.detail = f"{old} back to {capacity} instance(s) of {layout.versions[old]}"
                self.say(f"rollback: {old} was scaled down; {event.detail}")
                self._apply(colors.bring_up(old, layout.versions[old], capacity))
            timeout = record.strategy.health_timeout_s
            if not self._wait_healthy(record, old, capacity, timeout, phase="rollback-health"):
                raise DeployError(
                    f"Rollback of {record.id}: {old} did not turn healthy again ({self._health_reason}).",
                    hint=f"Check {old}'s instances, then run `labkit deploy abort {self.env}` again.",
                )
        if layout.weight(new) > 0:
            # The listener first, through the API (sub-second), then Terraform writes the same
            # weights so the state and the ledger agree; a failed API call leaves it to the apply.
            with self._phase(record, "rollback-listener") as event:
                self._fence()
                try:
                    set_weights(self.target, self._read_outputs(), {old: 100, new: 0})
                    event.detail = f"{old} at 100% through the ELBv2 API (was {layout.weight(old)}%)"
                    self._mark(probe, "restored")
                except DeployError as exc:
                    event.detail = f"API call failed, the apply sets the weights: {exc}"
                self.say(f"rollback: {event.detail}")
            with self._phase(record, "rollback") as event:
                event.detail = f"{old} at 100% in Terraform's state (was {layout.weight(old)}%)"
                self._apply(colors.restore(new))
            self._mark(probe, "restored")  # a second mark changes nothing: the weight is 0 already
            self.say(f"rollback: {old} serves all traffic")
        self._update(record, weight=0)
        # Parked only now that no traffic goes there (see colors.restore).
        with self._phase(record, "rollback-park") as event:
            event.detail = f"{new} to 0 instances"
            self._apply(colors.park(new))
        self.say(f"rollback: {new} scaled to 0 instances")

    def _database(self) -> EnvironmentDatabase | None:
        output = self._read_outputs().get("database")
        return EnvironmentDatabase.from_output(self.env, output) if isinstance(output, Mapping) else None

    def _migrate(
        self,
        record: Deployment,
        phase: str,
        version: str,
        action: Action,
        revision: str | None = None,
        *,
        probe: Probe | None = None,
    ) -> None:
        """Release ``version``'s ``python -m app.migrations ACTION`` on the environment's database,
        a ledger phase of its own (its duration recorded, and marked on ``probe``); nothing without
        a database."""
        database = self._database()
        if database is None:
            return
        self._mark(probe, phase)
        with self._phase(record, phase) as event:
            self._fence()
            said = run_migrations(
                self.target, self.stack.names.artifact_bucket, version, action, database, revision
            ).strip()
            event.detail = f"{version}: {said.splitlines()[-1] if said else action}"
            self.say(f"{phase}: {event.detail}")

    def _restore_schema(self, record: Deployment, *, code: str, back_to: str) -> None:
        """The database back to release ``back_to``'s revision, by release ``code``'s migrations
        (the newer release ships the downgrade). A failure is reported, not raised: the traffic
        goes back all the same, since a rollback that stops here helps no one."""
        if self._database() is None:
            return
        bucket = self.stack.names.artifact_bucket
        try:
            revision = run_migrations(self.target, bucket, back_to, "revision", None).strip()
            self._migrate(record, "rollback-migrate", code, "downgrade", revision)
        except MigrationError as exc:
            self.say(
                f"rollback-migrate: the schema stays where it is ({str(exc).splitlines()[0]}); "
                f"`labkit db current {self.env}` shows it, and {back_to}'s code may fail on it"
            )

    def _finish(self, record: Deployment, status: DeploymentStatus, reason: str) -> Deployment:
        finished = self.ledger.finish(record.id, status, reason, token=self._token())
        self._let_go()
        took = finished.duration_s or 0.0
        self.say(f"{status}: {reason} ({took:.1f} s); lock released")
        return finished

    # -- the lock: held, renewed, fenced, taken over ------------------------------------------

    def _hold(self, lock: LockHolder) -> LockHolder:
        """Hold ``lock``: its heartbeat is renewed from now until the public call returns."""
        self._lock = lock
        self._heartbeat = _Heartbeat(self.ledger, lock)
        self._heartbeat.start()
        return lock

    def _token(self) -> str:
        assert self._lock is not None, "the controller writes only while it holds the lock"
        return self._lock.token

    def _fence(self) -> None:
        """Before an apply: renew the lock, which fails if another process took it over."""
        assert self._lock is not None
        if self._heartbeat is not None and self._heartbeat.lost is not None:
            raise self._heartbeat.lost
        self._lock = self.ledger.heartbeat(self._lock)

    def _let_go(self) -> None:
        """Release the lock (conditional on its token) and stop renewing it."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._lock is not None:
            self.ledger.release_lock(self._lock)
            self._lock = None

    def _update(self, record: Deployment, **changes: Any) -> Deployment:
        return self.ledger.update(record.id, token=self._token(), **changes)

    def _interrupted(self, action: str, *, force: bool) -> Deployment:
        """The deployment a stopped controller left, with its lock now held by this controller."""
        self.target.require_spend(f"{action} the deployment of {self.env}")
        record, lock, previous = take_over(self.ledger, self.env, self.owner, action, force=force)
        self._hold(lock)
        if record is None:
            self._let_go()
            raise DeployError(
                f"{self.env} was locked by {previous} but no deployment is in progress; "
                "the lock is now released.",
                hint="Nothing had changed yet: deploy again.",
            )
        self.say(f"lock: taken over from {previous}")
        self._record_id = record.id
        self._taking_over_from = record
        # Before reading the layout: abort decides from the applied weights whether to shift back,
        # and a Terraform the stopped controller left mid-shift would change them after that read.
        wait_for_orphans(self.stack.terraform, self.say)
        return self.ledger.get(record.id)

    # -- plumbing -----------------------------------------------------------------------------

    def say(self, line: str) -> None:
        self._say(f"[{time.monotonic() - self._clock:6.1f}s] {line}")

    def _terraform_line(self, line: str) -> None:
        # Without terraform_lines, only what shows a long apply is alive: resources still being
        # created or changed, errors, and labkit's own word on stopping Terraform.
        if (
            self._terraform_lines
            or "Still " in line
            or "Error" in line
            or line.startswith("interrupt:")
            or "terraform (pid" in line
            or "timeout; asking it to stop" in line
        ):
            self._say(f"           terraform: {line}")

    @contextmanager
    def _phase(self, record: Deployment, phase: str) -> Iterator[Any]:
        with self.ledger.event(record.id, phase, token=self._token()) as event:
            yield event

    def _apply(self, variables: Mapping[str, Any], *, refresh: bool = True) -> None:
        """One Terraform apply of ``variables``; ``refresh=False`` only where :meth:`_step` says why.

        Fenced: it starts only while this controller still holds the deployment lock, and the
        Terraform state lock it takes is recorded, so that only that lock is ever broken after it.
        """
        started = time.monotonic()
        if self._taking_over_from is not None:
            wait_for_orphans(self.stack.terraform, self.say)
        self._fence()
        try:
            result = self.stack.apply(variables, refresh=refresh, on_state_lock=self._record_state_lock)
        except StateLockedError as locked:
            if self._taking_over_from is None:
                raise
            clear_stale_lock(self.stack.terraform, locked, self._taking_over_from, self.say)
            self._fence()
            result = self.stack.apply(variables, refresh=refresh, on_state_lock=self._record_state_lock)
        self._outputs = result.outputs
        changed = f"{result.added} added, {result.changed} changed, {result.removed} destroyed"
        how = "" if refresh else " (no refresh)"
        took = time.monotonic() - started
        self.say(f"  terraform apply {dict(variables)}{how}: {changed} in {took:.1f} s")

    def _read_outputs(self, *, fresh: bool = False) -> dict[str, Any]:
        if self._outputs is None or fresh:
            self._outputs = self.stack.outputs()
        return self._outputs

    def alb_url(self) -> str:
        """The URL clients reach the environment's load balancer at (loopback in the sandbox)."""
        return self.target.alb_url(self._read_outputs()["alb_dns_name"]).rstrip("/") + "/"

    def _mark(self, probe: Probe | None, phase: str) -> None:
        if probe is not None:
            probe.mark(phase)

    def _record_state_lock(self, info: dict[str, str]) -> None:
        """Record the state lock an apply holds, conditional on this controller's token: the fence
        after the state lock. A controller taken over between its fence and Terraform's lock fails
        here and its Terraform is stopped; one taken over after it keeps the state lock until its
        apply ends, so the new holder's apply comes after it."""
        if self._record_id is not None:
            lock: dict[str, str] = {k: str(info[k]) for k in ("ID", "Who", "Created") if k in info}
            self.ledger.update(self._record_id, terraform_lock=lock, token=self._token())

    _health_reason = ""


class _Paused(Exception):
    """A step ended without evidence under ``on_inconclusive="pause"``: stop, keep the record."""


class _Heartbeat:
    """Renews a deployment lock every ``ttl_s / 6`` from a daemon thread until stopped.

    A renewal that finds the lock taken over is kept in ``lost`` (the controller raises it before its
    next apply); one that fails for another reason (DynamoDB briefly unreachable) is retried.
    """

    def __init__(self, ledger: Ledger, lock: LockHolder) -> None:
        self._ledger = ledger
        self._lock = lock
        self._stopped = threading.Event()
        self.lost: DeploymentLockLostError | None = None
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{lock.env}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stopped.wait(self._lock.ttl_s / 6):
            try:
                self._lock = self._ledger.heartbeat(self._lock)
            except DeploymentLockLostError as lost:
                self.lost = lost
                return
            except LabkitError:
                continue
