"""What the sandbox's load balancer must serve, as plain data.

The sandbox service reads moto's ELBv2 models (and its own map of EC2 instances to app processes)
and hands the data plane a snapshot of these objects; the data plane reconciles to it. Keeping the
boundary as frozen data lets either side be tested without the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TargetState = Literal["initial", "healthy", "unhealthy", "unused", "draining", "unavailable"]


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check, in AWS's terms."""

    path: str = "/"
    port: str = "traffic-port"  # or a port number as text, as AWS stores it
    protocol: str = "HTTP"
    interval_s: float = 30  # AWS takes whole seconds; tests use fractions to run fast
    timeout_s: float = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"  # "200", "200,202" or "200-299"


@dataclass(frozen=True)
class GroupTarget:
    """One registered target: an EC2 instance id and where its app process listens on loopback.

    ``port`` is None when the instance has no running process (stopped, crashed before start).
    """

    target_id: str
    port: int | None
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class TargetGroup:
    arn: str
    name: str
    health_check: HealthCheck
    deregistration_delay_s: float
    targets: tuple[GroupTarget, ...]
    #: CloudWatch dimension values as AWS names them: "targetgroup/NAME/ID" and "app/NAME/ID".
    dimension: str
    load_balancer_dimension: str


@dataclass(frozen=True)
class Forward:
    """A forward action: (target group ARN, weight) pairs."""

    groups: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Rule:
    """A listener rule, evaluated by priority before the default action.

    ``http_headers`` maps a header name to the values that match (any of them, ``*`` wildcards as
    in AWS); ``path_patterns`` likewise. Every condition present must match.
    """

    priority: int
    forward: Forward
    http_headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    path_patterns: tuple[str, ...] = ()
    host_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listener:
    arn: str
    load_balancer_arn: str
    load_balancer_dns: str
    protocol: str
    port: int  # the listener's port on AWS (80); the sandbox serves it on its own loopback port
    default_forward: Forward | None
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    #: The load balancer's idle timeout (attribute idle_timeout.timeout_seconds): a target that sends
    #: nothing for this long gets the request answered with 504.
    idle_timeout_s: float = 60.0
    #: The load balancer's ``routing.http.desync_mitigation_mode``: "monitor", "defensive" or "strictest".
    desync_mitigation_mode: str = "defensive"
    #: The load balancer's ``routing.http.drop_invalid_header_fields.enabled``: header names outside
    #: ``[-A-Za-z0-9]`` are removed before the request goes to a target.
    drop_invalid_header_fields: bool = False


@dataclass(frozen=True)
class TargetHealthReport:
    """What ``describe_target_health`` should say for one target, as the data plane observed it."""

    state: TargetState
    reason: str | None = None  # AWS reason codes, e.g. "Target.FailedHealthChecks"
    description: str | None = None


@dataclass(frozen=True)
class MetricPoint:
    """One CloudWatch datum the data plane publishes (namespace AWS/ApplicationELB).

    A distribution (``TargetResponseTime``) also carries ``values`` and ``counts``, as CloudWatch's
    PutMetricData ``Values``/``Counts`` (at most 150 each): publish those instead of ``value``, which
    then holds their mean. Counts and gauges leave both empty.
    """

    name: str
    value: float
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp: float  # epoch seconds
    values: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()
