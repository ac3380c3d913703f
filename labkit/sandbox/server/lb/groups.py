"""Target groups and their targets as the data plane keeps them: health state, routing set, pools."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from labkit.sandbox.server.lb import health
from labkit.sandbox.server.lb.health import Matcher
from labkit.sandbox.server.lb.metrics import Counts, dimensions_for
from labkit.sandbox.server.topology import GroupTarget, HealthCheck, TargetGroup, TargetHealthReport


class PooledConnection(Protocol):
    """A kept-alive connection to a target, as its pool sees it (``proxy.UpstreamConnection``).

    A protocol, so that this module need not import the proxy, which imports it."""

    closed: bool
    #: Since when it waits in the pool, and for how long it may (its listener's idle timeout).
    idle_since: float
    idle_limit: float

    def send(self, exchange: Any, *, reused: bool) -> None: ...

    def close(self) -> None: ...


class TargetRuntime:
    """One registered target: where it listens, what its health checks say, its idle connections."""

    __slots__ = (
        "accepting",
        "checker",
        "drain_timer",
        "fail_streak",
        "host",
        "idle",
        "in_flight",
        "ok_streak",
        "port",
        "report",
        "target_id",
    )

    def __init__(self, target: GroupTarget, report: TargetHealthReport) -> None:
        self.target_id = target.target_id
        self.host = target.host
        self.port = target.port
        self.report = report
        self.ok_streak = 0
        self.fail_streak = 0
        #: Kept-alive connections ready for the next request (most recently used last).
        self.idle: list[PooledConnection] = []
        self.in_flight = 0
        #: False once deregistered: its connections are closed instead of pooled.
        self.accepting = True
        self.checker: asyncio.Task[None] | None = None
        self.drain_timer: asyncio.TimerHandle | None = None

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()

    def stop_checks(self) -> None:
        if self.checker is not None:
            self.checker.cancel()
            self.checker = None

    def reset(self, report: TargetHealthReport) -> None:
        """Start over from ``report`` (a new registration, or the group going in or out of use)."""
        self.report = report
        self.ok_streak = 0
        self.fail_streak = 0

    def observe(self, result: TargetHealthReport, check: HealthCheck) -> bool:
        """Count one health check result against the thresholds; True when the report changed.

        A newly registered target (``initial``) is healthy after one passing check, as AWS documents
        ("After your target is registered, it must pass one health check to be considered
        healthy"); the healthy threshold applies to a target coming back from unhealthy.
        """
        before = self.report
        if result is health.HEALTHY:
            self.ok_streak += 1
            self.fail_streak = 0
            if before.state == "initial" or (
                before.state != "healthy" and self.ok_streak >= check.healthy_threshold
            ):
                self.report = health.HEALTHY
        else:
            self.fail_streak += 1
            self.ok_streak = 0
            if before.state == "unhealthy" or self.fail_streak >= check.unhealthy_threshold:
                # An unhealthy target's reason follows its latest failed check.
                self.report = result
        return self.report != before


class GroupRuntime:
    """A target group: its config, registered and draining targets, and the targets routed to."""

    def __init__(self, config: TargetGroup, matcher: Matcher) -> None:
        self.config = config
        self.matcher = matcher
        self.dimensions = dimensions_for(config.load_balancer_dimension, config.dimension)
        self.targets: dict[str, TargetRuntime] = {}
        self.draining: dict[str, TargetRuntime] = {}
        #: Whether any listener forwards to the group (weight 0 included); unused groups run no checks.
        self.in_use = False
        #: Healthy targets, or every registered one when none is healthy (ALB fails open).
        self.routable: list[TargetRuntime] = []
        self.turn = 0
        self.counts = Counts()

    def pick(self) -> TargetRuntime | None:
        """The next routable target in round robin, None when the group has no targets."""
        routable = self.routable
        if not routable:
            return None
        self.turn = turn = (self.turn + 1) % len(routable)
        return routable[turn]

    def refresh_routable(self) -> None:
        registered = list(self.targets.values())
        healthy = [target for target in registered if target.report.state == "healthy"]
        self.routable = healthy or registered

    def take_counts(self) -> Counts:
        counts, self.counts = self.counts, Counts()
        return counts

    def host_counts(self) -> tuple[int, int]:
        states = [target.report.state for target in self.targets.values()]
        return states.count("healthy"), states.count("unhealthy")
