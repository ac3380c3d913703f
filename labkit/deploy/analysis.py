"""The analysis gate before each weight step: pass, fail or inconclusive, with the reason.

Two halves, so the judgement can be tested without AWS:

- :func:`decide` is a pure function of an :class:`AnalysisInput` (the new color's target health,
  alarms in ALARM, and traffic evidence from CloudWatch, the controller's check traffic and/or
  the user's probe) and the strategy's :class:`~labkit.deploy.strategy.Thresholds`.
- :func:`gather` reads those inputs from a target with boto3: the target group's
  ``RequestCount``, ``HTTPCode_Target_5XX_Count`` and ``TargetResponseTime`` (p95) in namespace
  ``AWS/ApplicationELB``, ``describe_target_health``, the named alarms' states, and optionally
  the probes' DataFrames for the same window. :func:`analyze` does both.

The rules, in order:

1. *fail* when the new color's target group has no registered target (no capacity), when any
   of its targets is not ``healthy``, or when a named alarm is in ALARM and counts (below).
2. For each traffic source with at least ``min_requests`` requests: *fail* when its 5xx rate is
   above ``max_5xx_rate`` or its p95 latency above ``max_p95_ms``. Also *fail* when the user's
   probe saw the color still serving (the old one, ``serving``) answer 5xx above ``max_5xx_rate``
   in the window: the deployment broke something the colors share, such as a database migration
   the old release's code cannot run against.
3. *inconclusive* when no source has ``min_requests`` requests: too little traffic to judge,
   never a pass (the controller holds, then does what the strategy's ``on_inconclusive`` says).
4. Otherwise *pass*.

Only fresh evidence counts. An alarm's state may come from an earlier fleet's data points still in
its evaluation periods (a broken release of the same color, rolled back minutes ago). So during a
deployment (given ``since``, when it began) an alarm in ALARM is re-evaluated: one on a single
metric counts only if its own metric breaches its threshold within this step's window; one that
cannot be read again that way (metric math, composite) counts if its state changed during the
deployment. An alarm that does not count is reported as stale in the verdict's reason.

Every finding goes into the reason, so a failure says all that was wrong, not just the first thing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from labkit.deploy.strategy import Thresholds
from labkit.errors import AnalysisError
from labkit.target import Target

Outcome = Literal["pass", "fail", "inconclusive"]
NAMESPACE = "AWS/ApplicationELB"


@dataclass(frozen=True)
class TargetHealth:
    """One registered target as ``describe_target_health`` reports it."""

    target_id: str
    state: str  # initial, healthy, unhealthy, unused, draining, unavailable
    reason: str | None = None


@dataclass(frozen=True)
class Evidence:
    """Traffic that reached the new color in the window, from one ``source``.

    ``p95_ms`` is None when the source cannot tell (no answers, or no percentile available).
    """

    source: str  # "cloudwatch", "check" (the controller's own traffic) or "probe" (the user's)
    requests: int
    errors_5xx: int  # for the probe also requests that got no answer at all
    p95_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors_5xx / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class AnalysisInput:
    """Everything :func:`decide` looks at, for the new color (``color``, used in the reason)."""

    color: str
    targets: tuple[TargetHealth, ...]
    alarms_in_alarm: tuple[str, ...] = ()
    cloudwatch: Evidence | None = None
    probe: Evidence | None = None
    check: Evidence | None = None
    #: Alarms in ALARM that do not count, each with why (see the module docstring).
    stale_alarms: tuple[str, ...] = ()
    #: The user's probe's requests answered by the color still serving (``serving_color``).
    serving: Evidence | None = None
    serving_color: str = ""


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def decide(inputs: AnalysisInput, thresholds: Thresholds) -> Verdict:
    """Judge the new color from ``inputs`` against ``thresholds`` (the rules in the module docstring)."""
    failures: list[str] = []
    color = inputs.color
    if not inputs.targets:
        failures.append(f"the {color} target group has no registered targets (no capacity)")
    else:
        sick = [t for t in inputs.targets if t.state != "healthy"]
        if sick:
            listed = ", ".join(
                f"{t.target_id} {t.state}" + (f" ({t.reason})" if t.reason else "") for t in sick
            )
            failures.append(f"{len(sick)} of {len(inputs.targets)} {color} targets not healthy: {listed}")
    if inputs.alarms_in_alarm:
        failures.append(f"alarm in ALARM: {', '.join(inputs.alarms_in_alarm)}")

    sources = [e for e in (inputs.cloudwatch, inputs.probe, inputs.check) if e is not None]
    enough = [e for e in sources if e.requests >= thresholds.min_requests]
    findings: list[str] = []
    for evidence in enough:
        rate_ok = evidence.error_rate <= thresholds.max_5xx_rate
        text = (
            f"{evidence.source}: {evidence.requests} requests, {evidence.errors_5xx} 5xx "
            f"({evidence.error_rate:.1%} {'<=' if rate_ok else '>'} {thresholds.max_5xx_rate:.1%})"
        )
        if not rate_ok:
            failures.append(f"{color} 5xx rate too high, {text}")
        if evidence.p95_ms is None:
            findings.append(f"{text}, p95 unknown")
        elif evidence.p95_ms > thresholds.max_p95_ms:
            limit = thresholds.max_p95_ms
            failures.append(
                f"{color} too slow, {evidence.source}: p95 {evidence.p95_ms:.0f} ms > {limit:.0f} ms"
            )
        else:
            findings.append(f"{text}, p95 {evidence.p95_ms:.0f} ms <= {thresholds.max_p95_ms:.0f} ms")

    serving = inputs.serving
    if (
        serving is not None
        and serving.requests >= thresholds.min_requests
        and serving.error_rate > thresholds.max_5xx_rate
    ):
        failures.append(
            f"{inputs.serving_color}, still serving, answers 5xx too: {serving.source}: "
            f"{serving.requests} requests, {serving.errors_5xx} 5xx ({serving.error_rate:.1%} > "
            f"{thresholds.max_5xx_rate:.1%}); the deployment broke what the colors share "
            "(its database migration?)"
        )
    if inputs.stale_alarms:
        findings.append(f"stale ALARM not counted: {', '.join(inputs.stale_alarms)}")
    if failures:
        return Verdict("fail", "; ".join(failures))
    if not enough:
        seen = (
            ", ".join(f"{e.source} {e.requests} ({e.errors_5xx} 5xx)" for e in sources) or "no traffic source"
        )
        return Verdict(
            "inconclusive",
            f"too little traffic to judge {color}: {seen}; need {thresholds.min_requests} requests",
        )
    healthy = f"{len(inputs.targets)}/{len(inputs.targets)} {color} targets healthy"
    return Verdict("pass", "; ".join([healthy, *findings]))


def probe_evidence(
    frame: pd.DataFrame,
    color: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    unsigned: bool = True,
) -> Evidence:
    """The probe's requests in ``[start, end)`` that reached ``color``, as :class:`Evidence`.

    A failure that names no color (no response, a load balancer error page) is counted against
    ``color``: during a deployment the new release is the change, so the gate assumes the worst.
    ``unsigned=False`` leaves those out (for the old color, judged on its own answers only).
    """
    window = frame
    if start is not None:
        window = window[window["time"] >= pd.Timestamp(_aware(start, "start"))]
    if end is not None:
        window = window[window["time"] < pd.Timestamp(_aware(end, "end"))]
    mine = window["color"] == color
    unsigned_failure = window["color"].isna() & ~window["ok"].astype(bool) & unsigned
    counted = window[mine | unsigned_failure]
    errors = int(((counted["status"] >= 500) | (counted["status"] == 0)).sum())
    latency = window.loc[mine & (window["status"] > 0), "latency_ms"].dropna()
    return Evidence(
        source="probe",
        requests=len(counted),
        errors_5xx=errors,
        p95_ms=float(latency.quantile(0.95)) if len(latency) else None,
    )


def metric_dimension(arn: str) -> str:
    """The CloudWatch dimension value of a load balancer or target group ARN.

    ``arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID`` gives ``app/NAME/ID``;
    ``...:targetgroup/NAME/ID`` gives ``targetgroup/NAME/ID``.
    """
    parts = arn.split(":", 5)
    resource = parts[5] if len(parts) == 6 and parts[2] == "elasticloadbalancing" else ""
    if resource.startswith("loadbalancer/app/"):
        return resource.removeprefix("loadbalancer/")
    if resource.startswith("targetgroup/"):
        return resource
    raise AnalysisError(
        f"{arn!r} is not an application load balancer or target group ARN.",
        hint="Pass the ARNs from the stack's Terraform outputs (alb_arn, the target group ARNs).",
    )


def gather(
    target: Target,
    *,
    color: str,
    load_balancer_arn: str,
    target_group_arn: str,
    start: datetime,
    end: datetime,
    alarm_names: Sequence[str] = (),
    probe: pd.DataFrame | None = None,
    check: pd.DataFrame | None = None,
    since: datetime | None = None,
    serving_color: str | None = None,
) -> AnalysisInput:
    """Read the gate's inputs for the new color's target group over ``[start, end)``.

    ``probe`` is the user's load probe, ``check`` the controller's own check traffic (both
    :class:`~labkit.deploy.probe.Probe` results, cut to the window here); with ``serving_color``
    the probe's answers from that color are judged too. ``since`` is when the
    deployment began: with it, alarms in ALARM are re-evaluated (module docstring); without it
    every ALARM counts.

    CloudWatch data arrives per period (60 s on AWS, 10 s in the sandbox), after the period ends
    and stamped with its start: a window shorter than a published period may hold no CloudWatch
    data (then only the probe counts). With several periods in the window the p95 is the highest
    period's p95, an upper bound.
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise AnalysisError(
            f"The analysis window ends ({end}) before it starts ({start}).",
            hint="Pass the bake's start and end times, end after start.",
        )
    dimensions = [
        {"Name": "LoadBalancer", "Value": metric_dimension(load_balancer_arn)},
        {"Name": "TargetGroup", "Value": metric_dimension(target_group_arn)},
    ]
    cloudwatch = target.client("cloudwatch")
    elbv2 = target.client("elbv2")
    # Standard-resolution metrics take periods in whole minutes; one period covers the window.
    period = 60 * max(1, math.ceil((end - start).total_seconds() / 60))
    query = {
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "StartTime": start.astimezone(UTC),
        "EndTime": end.astimezone(UTC),
        "Period": period,
    }
    requests = _metric_sum(cloudwatch, "RequestCount", query)
    errors = _metric_sum(cloudwatch, "HTTPCode_Target_5XX_Count", query)
    latency = _call(
        cloudwatch.get_metric_statistics,
        "read TargetResponseTime",
        MetricName="TargetResponseTime",
        ExtendedStatistics=["p95"],
        **query,
    )
    p95s = [
        p["ExtendedStatistics"]["p95"]
        for p in latency["Datapoints"]
        if "p95" in p.get("ExtendedStatistics", {})
    ]

    health = _call(elbv2.describe_target_health, "describe target health", TargetGroupArn=target_group_arn)
    targets = tuple(
        TargetHealth(
            target_id=d["Target"]["Id"],
            state=d["TargetHealth"]["State"],
            reason=d["TargetHealth"].get("Reason"),
        )
        for d in health["TargetHealthDescriptions"]
    )

    alarms_in_alarm: tuple[str, ...] = ()
    stale_alarms: tuple[str, ...] = ()
    if alarm_names:
        found = _call(cloudwatch.describe_alarms, "describe alarms", AlarmNames=list(alarm_names))
        states = {
            a["AlarmName"]: a["StateValue"] for a in found["MetricAlarms"] + found.get("CompositeAlarms", [])
        }
        missing = [name for name in alarm_names if name not in states]
        if missing:
            raise AnalysisError(
                f"No alarm named {', '.join(missing)} on the {target.name} target.",
                hint="Pass the alarm names the monitoring module outputs; a gate must not ignore an alarm "
                "that does not exist.",
            )
        every = found["MetricAlarms"] + found.get("CompositeAlarms", [])
        firing = [alarm for alarm in every if alarm["StateValue"] == "ALARM"]
        counted, stale = fresh_alarms(cloudwatch, firing, since=since, start=start, end=end)
        alarms_in_alarm = tuple(name for name in alarm_names if name in counted)
        stale_alarms = tuple(f"{name} ({stale[name]})" for name in alarm_names if name in stale)

    return AnalysisInput(
        color=color,
        targets=targets,
        alarms_in_alarm=alarms_in_alarm,
        cloudwatch=Evidence(
            source="cloudwatch",
            requests=int(requests),
            errors_5xx=int(errors),
            p95_ms=max(p95s) * 1000 if p95s else None,  # TargetResponseTime is in seconds
        ),
        probe=None if probe is None else probe_evidence(probe, color, start, end),
        check=None if check is None else replace(probe_evidence(check, color, start, end), source="check"),
        stale_alarms=stale_alarms,
        serving=(
            None
            if probe is None or not serving_color
            else probe_evidence(probe, serving_color, start, end, unsigned=False)
        ),
        serving_color=serving_color or "",
    )


def fresh_alarms(
    cloudwatch: Any, firing: list[dict[str, Any]], *, since: datetime | None, start: datetime, end: datetime
) -> tuple[set[str], dict[str, str]]:
    """The alarms in ALARM that count, and those that do not with why (module docstring)."""
    counted: set[str] = set()
    stale: dict[str, str] = {}
    for alarm in firing:
        name = str(alarm["AlarmName"])
        changed = alarm.get("StateUpdatedTimestamp")
        if since is None:
            counted.add(name)
        elif "MetricName" in alarm:
            if _breaches_in(cloudwatch, alarm, start, end):
                counted.add(name)
            else:
                stale[name] = "its metric does not breach in this step's window"
        elif changed is None or _aware(changed, "alarm state time") >= since:
            counted.add(name)
        else:
            stale[name] = f"in ALARM since {changed:%H:%M:%S}, before this deployment began"
    return counted, stale


def _breaches_in(cloudwatch: Any, alarm: dict[str, Any], start: datetime, end: datetime) -> bool:
    """Whether any of the alarm's own data points in ``[start, end)`` breaches its threshold."""
    statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic") or "Average"
    extended = statistic.startswith("p")
    points = _call(
        cloudwatch.get_metric_statistics,
        f"read {alarm['MetricName']} for alarm {alarm['AlarmName']}",
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm.get("Dimensions", []),
        StartTime=start.astimezone(UTC),
        EndTime=end.astimezone(UTC),
        Period=int(alarm.get("Period") or 60),
        **({"ExtendedStatistics": [statistic]} if extended else {"Statistics": [statistic]}),
    )["Datapoints"]
    compare = _COMPARE.get(str(alarm.get("ComparisonOperator")))
    if compare is None:  # an anomaly band: it cannot be judged here, so it counts
        return True
    threshold = float(alarm.get("Threshold", 0.0))
    values = [p["ExtendedStatistics"][statistic] if extended else p[statistic] for p in points]
    return any(compare(float(value), threshold) for value in values)


_COMPARE = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


def analyze(target: Target, thresholds: Thresholds, **window: Any) -> tuple[Verdict, AnalysisInput]:
    """:func:`gather` then :func:`decide`; returns the verdict and what it was based on."""
    inputs = gather(target, **window)
    return decide(inputs, thresholds), inputs


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise AnalysisError(
            f"The analysis window's {name} ({moment}) has no time zone.",
            hint="Use timezone-aware times, e.g. datetime.now(UTC).",
        )
    return moment


def _metric_sum(cloudwatch: Any, name: str, query: dict[str, Any]) -> float:
    response = _call(
        cloudwatch.get_metric_statistics, f"read {name}", MetricName=name, Statistics=["Sum"], **query
    )
    return float(sum(point.get("Sum", 0.0) for point in response["Datapoints"]))


def _call(operation: Any, what: str, **kwargs: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = operation(**kwargs)
    except ClientError as exc:
        raise AnalysisError(
            f"Could not {what} for the analysis: {exc}",
            hint="Check the ARNs (from the stack's Terraform outputs) and that the target is reachable.",
        ) from exc
    except BotoCoreError as exc:
        raise AnalysisError(
            f"Could not {what} for the analysis: {exc}",
            hint="Check that the target is up (`labkit doctor`; for the sandbox `labkit sandbox up`).",
        ) from exc
    return result
