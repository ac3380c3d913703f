"""Active health checks as an ALB runs them: one HTTP GET per interval, thresholds, AWS reason codes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from labkit.errors import ConfigError
from labkit.sandbox.server.topology import HealthCheck, TargetHealthReport

INITIAL = TargetHealthReport("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")
HEALTHY = TargetHealthReport("healthy")
DRAINING = TargetHealthReport(
    "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"
)
NOT_IN_USE = TargetHealthReport(
    "unused", "Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"
)
NOT_REGISTERED = TargetHealthReport(
    "unused", "Target.NotRegistered", "Target is not registered to the target group"
)
TIMED_OUT = TargetHealthReport("unhealthy", "Target.Timeout", "Request timed out")
FAILED = TargetHealthReport("unhealthy", "Target.FailedHealthChecks", "Health checks failed")


def mismatch(status: int) -> TargetHealthReport:
    return TargetHealthReport(
        "unhealthy", "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{status}]"
    )


@dataclass(frozen=True)
class Matcher:
    """The HTTP codes a health check accepts: "200", "200,202", "200-299" or a mix."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> Matcher:
        ranges = []
        for part in text.replace(" ", "").split(","):
            low, dash, high = part.partition("-")
            if not low.isdigit() or (dash and not high.isdigit()):
                raise ConfigError(
                    f"Health check matcher {text!r} is not a list of HTTP codes.",
                    hint='Use codes and ranges like "200", "200,202" or "200-299".',
                )
            first, last = int(low), int(high or low)
            if not 200 <= first <= last <= 499:
                raise ConfigError(
                    f"Health check matcher {text!r} has codes outside 200-499 or a reversed range.",
                    hint="ALB accepts success codes from 200 to 499; write ranges low-high.",
                )
            ranges.append((first, last))
        return cls(tuple(ranges))

    def accepts(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.ranges)


def check_port(check: HealthCheck, traffic_port: int | None) -> int | None:
    """The port to probe: the target's own for "traffic-port", else the number given."""
    if check.port == "traffic-port":
        return traffic_port
    return int(check.port)


def validate(check: HealthCheck, group_name: str) -> Matcher:
    """Refuse a health check the data plane cannot run, before anything changes."""
    if check.port != "traffic-port" and not (check.port.isdigit() and 1 <= int(check.port) <= 65535):
        raise ConfigError(
            f"Target group {group_name}: health check port {check.port!r} is neither 'traffic-port' nor "
            "a port number.",
            hint="Set the health check port to traffic-port or a number from 1 to 65535.",
        )
    if check.protocol not in ("HTTP", "HTTPS"):
        raise ConfigError(
            f"Target group {group_name}: health check protocol {check.protocol!r} is not supported.",
            hint="The sandbox runs HTTP health checks (HTTPS is checked as plain HTTP on loopback).",
        )
    if check.interval_s <= 0 or check.timeout_s <= 0 or check.timeout_s >= check.interval_s:
        raise ConfigError(
            f"Target group {group_name}: health check timeout {check.timeout_s}s must be positive and "
            f"shorter than its interval {check.interval_s}s.",
            hint="Give the health check a timeout below its interval, as AWS requires.",
        )
    if check.healthy_threshold < 1 or check.unhealthy_threshold < 1:
        raise ConfigError(
            f"Target group {group_name}: health check thresholds must be at least 1.",
            hint="Set healthy_threshold and unhealthy_threshold to 2..10 as on AWS.",
        )
    return Matcher.parse(check.matcher)


async def probe(
    host: str, port: int | None, path: str, timeout_s: float, matcher: Matcher
) -> TargetHealthReport:
    """One health check: HEALTHY or the unhealthy report saying why it failed."""
    if port is None:
        return FAILED
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ELB-HealthChecker/2.0\r\n"
        "Accept-Encoding: gzip, compressed\r\nConnection: close\r\n\r\n"
    ).encode()
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status_line = await reader.readline()
    except TimeoutError:
        return TIMED_OUT
    except OSError:
        return FAILED
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return FAILED
    status = int(parts[1])
    return HEALTHY if matcher.accepts(status) else mismatch(status)
