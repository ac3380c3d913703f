"""The data plane's engine: listeners, target groups, health checks, drains and metrics on one event loop.

It runs inside the plane's own process (see :mod:`.worker`), on that process's only event loop;
:class:`~labkit.sandbox.server.lb.LoadBalancerPlane` is its remote control. Nothing here blocks: a
request, a health check or a period's metrics each cost a few callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from labkit.errors import SandboxError
from labkit.sandbox.server.lb import health
from labkit.sandbox.server.lb.groups import GroupRuntime, TargetRuntime
from labkit.sandbox.server.lb.health import Matcher
from labkit.sandbox.server.lb.metrics import (
    Counts,
    count_points,
    dimensions_for,
    host_points,
    lb_dimension,
    merge,
)
from labkit.sandbox.server.lb.proxy import ClientBudget, ClientConnection, ListenerRuntime
from labkit.sandbox.server.lb.routing import compile_listener, forwarded_groups
from labkit.sandbox.server.topology import Listener, MetricPoint, TargetGroup, TargetHealthReport

log = logging.getLogger(__name__)

#: How often in-flight requests are checked against their listener's idle timeout.
SWEEP_INTERVAL_S = 0.1

#: What the engine tells its owner after every change: health reports and listener ports.
Snapshot = tuple[dict[tuple[str, str], TargetHealthReport], dict[str, int]]


class Engine:
    """ALB behaviour over loopback listeners; every method runs on the engine's event loop.

    ``publish`` gets each period's data points, ``on_change`` a new :data:`Snapshot` whenever a
    health report or a listener port changes. Both are called on the loop and must not block.
    """

    def __init__(
        self,
        *,
        publish: Callable[[list[MetricPoint]], None],
        on_change: Callable[[Snapshot], None],
        metrics_period_s: float,
        max_client_connections: int = 2000,
    ) -> None:
        self._publish = publish
        self._budget = ClientBudget(max_client_connections)
        self._on_change = on_change
        self._period = metrics_period_s
        self._listeners: dict[str, ListenerRuntime] = {}
        self._groups: dict[str, GroupRuntime] = {}
        self._loop = asyncio.get_running_loop()
        self._tasks = [self._loop.create_task(self._sweep()), self._loop.create_task(self._metrics())]

    async def apply(
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
            elif runtime.config != listener or runtime.table != table:
                # Unchanged tables are kept: their weighted decks hold the split exact over time.
                runtime.update(listener, table)
        self._snapshot()

    async def _serve(self, runtime: ListenerRuntime, port: int | None) -> asyncio.Server:
        def factory() -> ClientConnection:
            return ClientConnection(runtime, self._budget)

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
                runtime = group.draining.pop(target_id, None)
                if runtime is None:
                    runtime = TargetRuntime(target, health.INITIAL)
                else:
                    # Registered again while draining: its in-flight requests carry on, checks start over.
                    if runtime.drain_timer is not None:
                        runtime.drain_timer.cancel()
                        runtime.drain_timer = None
                    runtime.accepting = True
                    runtime.reset(health.INITIAL)
                group.targets[target_id] = runtime
                if not in_use:
                    runtime.reset(health.NOT_IN_USE)
            if (runtime.host, runtime.port) != (target.host, target.port):
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
            for group in self._groups.values():
                for target in group.targets.values():
                    for connection in [
                        each for each in target.idle if now - each.idle_since > each.idle_limit
                    ]:
                        connection.close()

    async def _metrics(self) -> None:
        while True:
            now = time.time()
            start = math.floor(now / self._period) * self._period
            await asyncio.sleep(start + self._period - now)
            self._flush(start)

    def _flush(self, timestamp: float) -> None:
        """Publish the period's points: every group's counts, host counts of the groups in use."""
        points: list[MetricPoint] = []
        by_lb: dict[str, list[Counts]] = {}
        for group in self._groups.values():
            counts = group.take_counts()
            points += count_points(counts, group.dimensions, timestamp)
            if group.in_use:
                points += host_points(*group.host_counts(), group.dimensions, timestamp)
            by_lb.setdefault(group.config.load_balancer_dimension, []).append(counts)
        for listener in self._listeners.values():
            lb = lb_dimension(listener.config.load_balancer_arn)
            by_lb.setdefault(lb, []).append(listener.take_counts())
        for lb, parts in by_lb.items():
            points += count_points(merge(parts), dimensions_for(lb), timestamp)
        if points:
            self._publish(points)

    def _snapshot(self) -> None:
        reports: dict[tuple[str, str], TargetHealthReport] = {}
        for arn, group in self._groups.items():
            for target_id, target in group.targets.items():
                reports[arn, target_id] = target.report
            for target_id in group.draining:
                reports[arn, target_id] = health.DRAINING
        ports = {
            arn: int(listener.server.sockets[0].getsockname()[1])
            for arn, listener in self._listeners.items()
            if listener.server is not None and listener.server.sockets
        }
        self._on_change((reports, ports))

    async def close(self) -> None:
        """Stop listeners, checks and drains (cutting what is in flight); publish the last partial period."""
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
