"""Counting requests per target group and turning a period's counts into CloudWatch data points.

Every period (10 s by default, aligned to the wall clock) the plane takes each group's counters and
publishes them, timestamped with the period's start, so CloudWatch's Sum over any multiple of the
period adds up exactly. Counts follow ALB's reporting rule: a count is published only when nonzero.
``TargetResponseTime`` goes out as a distribution (CloudWatch's Values/Counts over logarithmic
buckets 1 % wide), so the receiver can answer Average, Minimum, Maximum, SampleCount and
percentiles such as p95 from it to within half a percent; each point's ``value`` is the mean of
the values it carries. Counting into buckets as requests finish keeps the period's flush cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from labkit.sandbox.server.topology import MetricPoint

NAMESPACE = "AWS/ApplicationELB"

#: CloudWatch takes at most 150 distinct values in one datum.
MAX_VALUES_PER_POINT = 150

#: Response-time buckets per factor e: 100 makes each bucket 1 % wide.
BUCKETS_PER_E = 100
#: Faster than this counts as this (a clock tick can make a response look instant).
MIN_LATENCY_S = 1e-6


@dataclass(slots=True)
class Counts:
    """One period's request counts, for one target group or one load balancer."""

    requests: int = 0
    target_2xx: int = 0
    target_3xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    elb_502: int = 0
    elb_503: int = 0
    elb_504: int = 0
    #: Requests the load balancer answered 4xx itself (400 malformed or refused, 408, 413).
    elb_4xx: int = 0
    #: Requests http-desync-guardian would not call Compliant, whatever the mode did with them.
    non_compliant: int = 0
    #: Response times: logarithmic bucket number -> how many responses fell in it.
    latency_buckets: dict[int, int] = field(default_factory=dict)

    def record_target(self, status: int, latency_s: float) -> None:
        """A target answered ``status`` after ``latency_s`` seconds."""
        bucket = math.floor(math.log(max(latency_s, MIN_LATENCY_S)) * BUCKETS_PER_E)
        self.latency_buckets[bucket] = self.latency_buckets.get(bucket, 0) + 1
        klass = status // 100
        if klass == 2:
            self.target_2xx += 1
        elif klass == 5:
            self.target_5xx += 1
        elif klass == 4:
            self.target_4xx += 1
        elif klass == 3:
            self.target_3xx += 1

    def record_elb_error(self, status: int) -> None:
        if status == 502:
            self.elb_502 += 1
        elif status == 503:
            self.elb_503 += 1
        elif status == 504:
            self.elb_504 += 1
        else:
            self.elb_4xx += 1

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.target_2xx += other.target_2xx
        self.target_3xx += other.target_3xx
        self.target_4xx += other.target_4xx
        self.target_5xx += other.target_5xx
        self.elb_502 += other.elb_502
        self.elb_503 += other.elb_503
        self.elb_504 += other.elb_504
        self.elb_4xx += other.elb_4xx
        self.non_compliant += other.non_compliant
        for bucket, count in other.latency_buckets.items():
            self.latency_buckets[bucket] = self.latency_buckets.get(bucket, 0) + count


def count_points(
    counts: Counts, dimensions: tuple[tuple[str, str], ...], timestamp: float
) -> list[MetricPoint]:
    """The period's nonzero counts and its response-time distribution as data points."""
    elb_5xx = counts.elb_502 + counts.elb_503 + counts.elb_504
    named = [
        ("RequestCount", counts.requests),
        ("HTTPCode_Target_2XX_Count", counts.target_2xx),
        ("HTTPCode_Target_3XX_Count", counts.target_3xx),
        ("HTTPCode_Target_4XX_Count", counts.target_4xx),
        ("HTTPCode_Target_5XX_Count", counts.target_5xx),
        ("HTTPCode_ELB_5XX_Count", elb_5xx),
        ("HTTPCode_ELB_502_Count", counts.elb_502),
        ("HTTPCode_ELB_503_Count", counts.elb_503),
        ("HTTPCode_ELB_504_Count", counts.elb_504),
        ("HTTPCode_ELB_4XX_Count", counts.elb_4xx),
        ("DesyncMitigationMode_NonCompliant_Request_Count", counts.non_compliant),
    ]
    points = [
        MetricPoint(name, float(value), "Count", dimensions, timestamp) for name, value in named if value
    ]
    points.extend(latency_points(counts.latency_buckets, dimensions, timestamp))
    return points


def latency_points(
    buckets: dict[int, int], dimensions: tuple[tuple[str, str], ...], timestamp: float
) -> list[MetricPoint]:
    """``TargetResponseTime`` as distributions of at most 150 distinct values each (bucket middles)."""
    histogram = [(bucket_value(bucket), float(count)) for bucket, count in sorted(buckets.items())]
    points = []
    for start in range(0, len(histogram), MAX_VALUES_PER_POINT):
        part = histogram[start : start + MAX_VALUES_PER_POINT]
        values = tuple(value for value, _ in part)
        counts = tuple(count for _, count in part)
        mean = sum(value * count for value, count in part) / sum(counts)
        points.append(
            MetricPoint("TargetResponseTime", mean, "Seconds", dimensions, timestamp, values, counts)
        )
    return points


def bucket_value(bucket: int) -> float:
    """The middle of a response-time bucket, in seconds (six significant digits)."""
    value = math.exp((bucket + 0.5) / BUCKETS_PER_E)
    return float(f"{value:.6g}")


def host_points(
    healthy: int, unhealthy: int, dimensions: tuple[tuple[str, str], ...], timestamp: float
) -> list[MetricPoint]:
    """The host counts, published every period (zero included), as ALB does while health checks run."""
    return [
        MetricPoint("HealthyHostCount", float(healthy), "Count", dimensions, timestamp),
        MetricPoint("UnHealthyHostCount", float(unhealthy), "Count", dimensions, timestamp),
    ]


def lb_dimension(load_balancer_arn: str) -> str:
    """The ``LoadBalancer`` dimension AWS derives from an ALB's ARN: "app/NAME/ID"."""
    return load_balancer_arn.split(":loadbalancer/", 1)[-1]


def dimensions_for(load_balancer: str, target_group: str | None = None) -> tuple[tuple[str, str], ...]:
    """Dimensions in the order CloudWatch lists them for ALB metrics, sorted by name."""
    if target_group is None:
        return (("LoadBalancer", load_balancer),)
    return (("LoadBalancer", load_balancer), ("TargetGroup", target_group))


def merge(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for each in counts:
        total.add(each)
    return total
