"""The load balancer data plane: listeners on loopback that route, health-check and count like an ALB.

The sandbox service owns one :class:`LoadBalancerPlane` and calls :meth:`~LoadBalancerPlane.apply`
with what moto's ELBv2 models hold whenever they change. The plane runs its own event loop in a
background thread; every method here may be called from any other thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...errors import ConfigError, SandboxError
from ..topology import Listener, MetricPoint, TargetGroup, TargetHealthReport
from . import health
from .groups import GroupRuntime, TargetRuntime
from .health import Matcher
from .metrics import Counts, count_points, dimensions_for, host_points, lb_dimension, merge
from .proxy import ClientConnection, ListenerRuntime
from .routing import compile_listener, forwarded_groups

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often in-flight requests are checked against their listener's idle timeout.
SWEEP_INTERVAL_S = 0.1


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (it roughly halves the proxy's cost per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoadBalancerPlane:
    """Loopback listeners that route like an ALB, with health checks, draining and metrics.

    ``publish`` receives each period's CloudWatch data points (namespace ``AWS/ApplicationELB``),
    from a thread of its own so that a slow receiver never holds up traffic. Counts are published
    every ``metrics_period_s`` seconds, aligned to the wall clock and timestamped with the start of
    their period.
    """

    def __init__(
        self, *, publish: Callable[[list[MetricPoint]], None], metrics_period_s: float = 10.0
    ) -> None:
        if metrics_period_s <= 0:
            raise ConfigError(
                f"metrics_period_s must be positive, got {metrics_period_s}.",
                hint="Use 10 (seconds) for CloudWatch-like data, or a fraction of a second in tests.",
            )
        self._publish = publish
        self._period = metrics_period_s
        self._listeners: dict[str, ListenerRuntime] = {}
        self._groups: dict[str, GroupRuntime] = {}
        # Snapshots for readers on other threads, replaced whole (never mutated) by the loop thread.
        self._reports: dict[tuple[str, str], TargetHealthReport] = {}
        self._ports: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-lb-metrics")
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labkit-lb", daemon=True)
        self._thread.start()
        self._call(self._start())

    # --- public API (any thread) ---

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
        delay. Nothing changes when the input is invalid.
        """
        matchers = validate(listeners, target_groups)
        self._call(self._apply(listeners, target_groups, matchers, dict(ports or {})))

    def listener_port(self, listener_arn: str) -> int | None:
        """The loopback port serving the listener, None when the plane has no such listener."""
        return self._ports.get(listener_arn)

    def health(self, target_group_arn: str, target_id: str) -> TargetHealthReport:
        """What ``describe_target_health`` should say for the target, as the plane observed it."""
        return self._reports.get((target_group_arn, target_id), health.NOT_REGISTERED)

    def close(self) -> None:
        """Stop listeners, health checks and drains; publish the last partial period. Idempotent."""
        if self._closed:
            return
        try:
            self._call(self._shutdown(), timeout=10)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()
            self._publisher.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> LoadBalancerPlane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        if self._closed:
            coro.close()
            raise SandboxError(
                "The load balancer data plane is closed.", hint="Create a new LoadBalancerPlane."
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- on the loop thread ---

    async def _start(self) -> None:
        self._loop.set_exception_handler(_log_loop_error)
        self._tasks = [self._loop.create_task(self._sweep()), self._loop.create_task(self._metrics())]

    async def _apply(
        self,
        listeners: list[Listener],
        target_groups: list[TargetGroup],
        matchers: dict[str, Matcher],
        ports: dict[str, int],
    ) -> None:
        in_use: set[str] = set()
        for listener in listeners:
            in_use |= forwarded_groups(listener)
        wanted_groups = {group.arn for group in target_groups}
        for arn in [arn for arn in self._groups if arn not in wanted_groups]:
            self._remove_group(self._groups.pop(arn))
        for config in target_groups:
            self._reconcile_group(config, matchers[config.arn], config.arn in in_use)

        wanted_listeners = {listener.arn for listener in listeners}
        for arn in [arn for arn in self._listeners if arn not in wanted_listeners]:
            self._listeners.pop(arn).close()
        for listener in listeners:
            table = compile_listener(listener, self._groups)
            runtime = self._listeners.get(listener.arn)
            if runtime is None:
                runtime = ListenerRuntime(listener, table)
                runtime.server = await self._serve(runtime, ports.get(listener.arn))
                self._listeners[listener.arn] = runtime
            else:
                runtime.update(listener, table)
        self._snapshot()

    async def _serve(self, runtime: ListenerRuntime, port: int | None) -> asyncio.Server:
        def factory() -> ClientConnection:
            return ClientConnection(runtime)

        if port:
            try:
                return await self._loop.create_server(factory, "127.0.0.1", port, backlog=1024)
            except OSError:
                log.info("port %s for %s is taken; serving on a free port", port, runtime.config.arn)
        try:
            return await self._loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
        except OSError as error:
            raise SandboxError(
                f"Could not open a loopback port for listener {runtime.config.arn}: {error}",
                hint="Check that 127.0.0.1 is up and that the process may open more files (ulimit -n).",
            ) from error

    def _reconcile_group(self, config: TargetGroup, matcher: Matcher, in_use: bool) -> None:
        group = self._groups.get(config.arn)
        if group is None:
            group = self._groups[config.arn] = GroupRuntime(config, matcher)
        check_changed = group.config.health_check != config.health_check
        group.config = config
        group.matcher = matcher
        group.dimensions = dimensions_for(config.load_balancer_dimension, config.dimension)
        use_changed = group.in_use != in_use
        group.in_use = in_use

        wanted = {target.target_id: target for target in config.targets}
        for target_id in [each for each in group.targets if each not in wanted]:
            self._deregister(group, group.targets.pop(target_id))
        for target_id, target in wanted.items():
            runtime = group.targets.get(target_id)
            if runtime is None:
                drained = group.draining.pop(target_id, None)
                if drained is not None:
                    self._forget(drained)
                runtime = group.targets[target_id] = TargetRuntime(target, health.INITIAL)
                if not in_use:
                    runtime.reset(health.NOT_IN_USE)
            elif (runtime.host, runtime.port) != (target.host, target.port):
                # The instance's process moved (restarted on another port): same target, new address.
                runtime.host, runtime.port = target.host, target.port
                runtime.close_idle()

        for runtime in group.targets.values():
            if not in_use:
                runtime.stop_checks()
                runtime.reset(health.NOT_IN_USE)
                continue
            if use_changed:
                runtime.reset(health.INITIAL)
            if runtime.checker is None or check_changed or use_changed:
                runtime.stop_checks()
                runtime.checker = self._loop.create_task(self._check(group, runtime))
        group.refresh_routable()

    def _deregister(self, group: GroupRuntime, target: TargetRuntime) -> None:
        """No new requests; in-flight ones run on for the deregistration delay, then are cut."""
        target.stop_checks()
        target.accepting = False
        target.close_idle()
        delay = group.config.deregistration_delay_s
        if not group.in_use or delay <= 0:
            self._forget(target)
            return
        target.reset(health.DRAINING)
        group.draining[target.target_id] = target
        target.drain_timer = self._loop.call_later(delay, self._drained, group, target)

    def _drained(self, group: GroupRuntime, target: TargetRuntime) -> None:
        if group.draining.get(target.target_id) is target:
            del group.draining[target.target_id]
            self._forget(target)
            self._snapshot()

    def _forget(self, target: TargetRuntime) -> None:
        target.stop_checks()
        target.accepting = False
        if target.drain_timer is not None:
            target.drain_timer.cancel()
            target.drain_timer = None
        target.close_idle()
        for listener in self._listeners.values():
            for exchange in [each for each in listener.active if each.target is target]:
                exchange.abort()

    def _remove_group(self, group: GroupRuntime) -> None:
        for target in [*group.targets.values(), *group.draining.values()]:
            self._forget(target)
        group.targets.clear()
        group.draining.clear()
        group.routable = []

    async def _check(self, group: GroupRuntime, target: TargetRuntime) -> None:
        """Health-check one target every interval until cancelled."""
        check = group.config.health_check
        matcher = group.matcher
        while True:
            started = self._loop.time()
            port = health.check_port(check, target.port)
            result = await health.probe(target.host, port, check.path, check.timeout_s, matcher)
            if target.observe(result, check):
                log.info("target %s in %s: %s", target.target_id, group.config.name, target.report)
                group.refresh_routable()
                self._snapshot()
            await asyncio.sleep(max(0.0, started + check.interval_s - self._loop.time()))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.perf_counter()
            for listener in self._listeners.values():
                listener.sweep(now)

    async def _metrics(self) -> None:
        while True:
            now = time.time()
            start = math.floor(now / self._period) * self._period
            await asyncio.sleep(start + self._period - now)
            self._flush(start)

    def _flush(self, timestamp: float) -> None:
        """Hand the period's data points to ``publish`` on the publisher thread."""
        points: list[MetricPoint] = []
        by_lb: dict[str, list[Counts]] = {}
        for group in self._groups.values():
            if not group.in_use:
                continue
            counts = group.take_counts()
            points += count_points(counts, group.dimensions, timestamp)
            points += host_points(*group.host_counts(), group.dimensions, timestamp)
            by_lb.setdefault(group.config.load_balancer_dimension, []).append(counts)
        for listener in self._listeners.values():
            lb = lb_dimension(listener.config.load_balancer_arn)
            by_lb.setdefault(lb, []).append(listener.take_counts())
        for lb, parts in by_lb.items():
            points += count_points(merge(parts), dimensions_for(lb), timestamp)
        if points:
            self._publisher.submit(self._publish_safely, points)

    def _publish_safely(self, points: list[MetricPoint]) -> None:
        try:
            self._publish(points)
        except Exception:
            log.exception("publishing %d load balancer metric points failed", len(points))

    def _snapshot(self) -> None:
        reports: dict[tuple[str, str], TargetHealthReport] = {}
        for arn, group in self._groups.items():
            for target_id, target in group.targets.items():
                reports[arn, target_id] = target.report
            for target_id in group.draining:
                reports[arn, target_id] = health.DRAINING
        self._reports = reports
        self._ports = {
            arn: listener.server.sockets[0].getsockname()[1]
            for arn, listener in self._listeners.items()
            if listener.server is not None and listener.server.sockets
        }

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._flush(math.floor(time.time() / self._period) * self._period)
        for listener in self._listeners.values():
            listener.close()
        for group in self._groups.values():
            self._remove_group(group)
        self._listeners.clear()
        self._groups.clear()
        self._snapshot()


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
        if listener.idle_timeout_s <= 0:
            raise ConfigError(
                f"Listener {listener.arn}: idle timeout {listener.idle_timeout_s}s is not positive.",
                hint="Use the load balancer's idle_timeout.timeout_seconds (1..4000, default 60).",
            )
    return matchers


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.error("load balancer loop: %s", context.get("message"), exc_info=context.get("exception"))
