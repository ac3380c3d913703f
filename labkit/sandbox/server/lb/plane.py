"""The load balancer data plane: loopback listeners that route, health-check and count like an ALB.

The sandbox service owns one :class:`LoadBalancerPlane` and calls :meth:`~LoadBalancerPlane.apply`
with what moto's ELBv2 models hold whenever they change. The plane itself runs in a process of
its own (see :mod:`.worker` for why); this object is its remote control, safe to use from any
thread.
"""

from __future__ import annotations

import itertools
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, SandboxError
from labkit.sandbox.server.lb import channel, health
from labkit.sandbox.server.lb.health import Matcher
from labkit.sandbox.server.lb.http1 import DESYNC_MODES
from labkit.sandbox.server.lb.worker import BOOTSTRAP
from labkit.sandbox.server.topology import Listener, MetricPoint, TargetGroup, TargetHealthReport

log = logging.getLogger(__name__)

_PACKAGES = [
    ("labkit", str(Path(__file__).resolve().parents[3])),
    ("labkit.sandbox", str(Path(__file__).resolve().parents[2])),
    ("labkit.sandbox.server", str(Path(__file__).resolve().parents[1])),
]


class LoadBalancerPlane:
    """Loopback listeners that route like an ALB, with health checks, draining and metrics.

    ``publish`` receives each period's CloudWatch data points (namespace ``AWS/ApplicationELB``)
    on a thread of its own, so a slow receiver never holds up traffic. Counts are published every
    ``metrics_period_s`` seconds, aligned to the wall clock and timestamped with the start of
    their period. Beyond ``max_client_connections`` open client connections (all listeners
    together) a new one is answered 503 and closed, so that one loop keeps serving those it has.
    Raises SandboxError when the plane's process cannot start.
    """

    def __init__(
        self,
        *,
        publish: Callable[[list[MetricPoint]], None],
        metrics_period_s: float = 10.0,
        start_timeout_s: float = 30.0,
        max_client_connections: int = 2000,
    ) -> None:
        if max_client_connections < 1:
            raise ConfigError(
                f"max_client_connections must be at least 1, got {max_client_connections}.",
                hint="Leave it at its default unless a test needs a small cap.",
            )
        if metrics_period_s <= 0:
            raise ConfigError(
                f"metrics_period_s must be positive, got {metrics_period_s}.",
                hint="Use 10 (seconds) for CloudWatch-like data, or a fraction of a second in tests.",
            )
        self._publish = publish
        # Snapshots from the plane's process, replaced whole (never mutated) by the receiver thread.
        self._reports: dict[tuple[str, str], TargetHealthReport] = {}
        self._ports: dict[str, int] = {}
        self._pending: dict[int, Future[Any]] = {}
        self._requests = itertools.count(1)
        self._send_lock = threading.Lock()
        self._closed = False
        self._ready: Future[int] = Future()
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-lb-metrics")

        ours, theirs = socket.socketpair()
        level = logging.getLogger("labkit").getEffectiveLevel()
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    BOOTSTRAP.format(packages=_PACKAGES),
                    str(theirs.fileno()),
                    repr(metrics_period_s),
                    str(level),
                    str(max_client_connections),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._sock = ours
        self._receiver = threading.Thread(target=self._receive, name="labkit-lb-receiver", daemon=True)
        self._receiver.start()
        try:
            self._ready.result(start_timeout_s)
        except (FutureTimeout, SandboxError):
            self._process.kill()
            self._process.wait()
            self._sock.close()
            raise SandboxError(
                f"The load balancer process did not start within {start_timeout_s:g} s "
                f"(exit code {self._process.returncode}).",
                hint="Its error is above in this process's stderr (the sandbox log); on a busy machine "
                "pass a longer start_timeout_s.",
            ) from None

    @property
    def pid(self) -> int:
        """The plane's process id."""
        return self._process.pid

    def apply(
        self,
        listeners: list[Listener],
        target_groups: list[TargetGroup],
        *,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """Reconcile to exactly these listeners and target groups (idempotent).

        New listeners get a loopback server (on ``ports[arn]`` when given and free, else any free
        port); removed ones stop. Weights and rules apply to the next request. New targets start
        ``initial`` and are health-checked; deregistered ones drain for the group's deregistration
        delay. Invalid input raises ConfigError and changes nothing.
        """
        matchers = validate(listeners, target_groups)
        failure = self._request("apply", list(listeners), list(target_groups), matchers, dict(ports or {}))
        if failure is not None:
            kind, message, hint = failure
            raise (ConfigError if kind == "ConfigError" else SandboxError)(message, hint=hint)

    def listener_port(self, listener_arn: str) -> int | None:
        """The loopback port serving the listener, None when the plane has no such listener."""
        return self._ports.get(listener_arn)

    def health(self, target_group_arn: str, target_id: str) -> TargetHealthReport:
        """What ``describe_target_health`` should say for the target, as the plane observed it."""
        return self._reports.get((target_group_arn, target_id), health.NOT_REGISTERED)

    def close(self) -> None:
        """Stop listeners, health checks and drains, publish the last partial period, end the process.

        Idempotent; in-flight requests are cut.
        """
        if self._closed:
            return
        self._closed = True
        if self._process.poll() is None:
            try:
                self._request("close", timeout_s=15, closing=True)
            except SandboxError as error:
                log.warning("the load balancer process did not close cleanly: %s", error.message)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._sock.close()
        self._receiver.join(5)
        self._publisher.shutdown(wait=True)

    def __enter__(self) -> LoadBalancerPlane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- talking to the process ---

    def _request(self, kind: str, *args: Any, timeout_s: float = 30, closing: bool = False) -> Any:
        if self._closed and not closing:
            raise SandboxError(
                "The load balancer data plane is closed.", hint="Create a new LoadBalancerPlane."
            )
        request = next(self._requests)
        reply: Future[Any] = Future()
        self._pending[request] = reply
        try:
            with self._send_lock:
                self._sock.sendall(channel.encode((kind, request, *args)))
            return reply.result(timeout_s)
        except OSError:
            raise self._gone() from None
        except FutureTimeout:
            raise SandboxError(
                f"The load balancer process did not answer {kind!r} within {timeout_s:g} s.",
                hint="See the sandbox log for its errors; restarting the sandbox starts a new one.",
            ) from None
        finally:
            self._pending.pop(request, None)

    def _receive(self) -> None:
        """Read the process's messages until it goes: snapshots, metrics and replies."""
        try:
            while True:
                message = channel.receive(self._sock)
                kind = message[0]
                if kind == "snapshot":
                    self._reports, self._ports = message[1]
                elif kind == "metrics":
                    self._publisher.submit(self._publish_safely, message[1])
                elif kind == "reply":
                    waiting = self._pending.get(message[1])
                    if waiting is not None:
                        waiting.set_result(message[2])
                elif kind == "ready":
                    self._ready.set_result(message[1])
        except (EOFError, OSError):
            pass
        gone = self._gone()
        for waiting in list(self._pending.values()):
            if not waiting.done():
                waiting.set_exception(gone)
        if not self._ready.done():
            self._ready.set_exception(gone)
        if not self._closed:
            log.error("%s", gone)

    def _gone(self) -> SandboxError:
        code = self._process.poll()
        return SandboxError(
            f"The load balancer process has exited (exit code {code}).",
            hint="Its error is in the sandbox log; `labkit sandbox down` and `up` start a new one.",
        )

    def _publish_safely(self, points: list[MetricPoint]) -> None:
        try:
            self._publish(points)
        except Exception:
            log.exception("publishing %d load balancer metric points failed", len(points))


def validate(listeners: list[Listener], target_groups: list[TargetGroup]) -> dict[str, Matcher]:
    """Check everything ``apply`` is given before anything changes; the health check matchers by ARN."""
    matchers = {}
    for group in target_groups:
        if group.arn in matchers:
            raise ConfigError(
                f"Target group {group.arn} is listed twice.", hint="Pass each target group once."
            )
        if group.deregistration_delay_s < 0:
            raise ConfigError(
                f"Target group {group.name}: deregistration delay {group.deregistration_delay_s}s "
                "is negative.",
                hint="Use 0..3600 seconds, as AWS does.",
            )
        matchers[group.arn] = health.validate(group.health_check, group.name)
    seen: set[str] = set()
    for listener in listeners:
        if listener.arn in seen:
            raise ConfigError(f"Listener {listener.arn} is listed twice.", hint="Pass each listener once.")
        seen.add(listener.arn)
        forwards = [listener.default_forward, *(rule.forward for rule in listener.rules)]
        for forward in forwards:
            for arn, weight in forward.groups if forward else ():
                if not 0 <= weight <= 999:
                    raise ConfigError(
                        f"Listener {listener.arn}: weight {weight} for {arn} is outside 0..999.",
                        hint="Give each target group in a forward action a weight from 0 to 999.",
                    )
        if listener.desync_mitigation_mode not in DESYNC_MODES:
            raise ConfigError(
                f"Listener {listener.arn}: desync mitigation mode {listener.desync_mitigation_mode!r} "
                "is not one of monitor, defensive, strictest.",
                hint="Set routing.http.desync_mitigation_mode to monitor, defensive (default) or strictest.",
            )
        if listener.idle_timeout_s <= 0:
            raise ConfigError(
                f"Listener {listener.arn}: idle timeout {listener.idle_timeout_s}s is not positive.",
                hint="Use the load balancer's idle_timeout.timeout_seconds (1..4000, default 60).",
            )
    return matchers
