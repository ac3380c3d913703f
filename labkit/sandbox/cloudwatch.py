"""CloudWatch as the sandbox runs it: metric alarms evaluated, the data plane's metrics stored.

Stock moto stores alarms but never evaluates them. :func:`evaluate_alarms` does what CloudWatch
does every minute, and the sandbox calls it every few seconds so lessons need not wait:

- each metric alarm's statistic (``Sum``, ``Average``, ``Minimum``, ``Maximum``, ``SampleCount``
  or a percentile such as ``p99``) over each of its last ``EvaluationPeriods`` periods, the
  newest ending now (windows slide with the clock instead of waiting for a period to close);
- ``ALARM`` when at least ``DatapointsToAlarm`` (default: all) of them breach the threshold by
  the comparison operator, else ``OK``;
- missing periods per ``TreatMissingData``: ``breaching``, ``notBreaching``, ``ignore`` (keep
  the state when nothing is there) or ``missing`` (the default: ``INSUFFICIENT_DATA`` when
  nothing is there; with some data, the periods present decide, needing at most as many
  breaching ones as are present);
- a change of state sets ``StateValue``, ``StateReason`` and ``StateReasonData`` as AWS words
  them, and leaves an alarm history item (see :mod:`labkit.sandbox.mends`).

Alarms on metric math and anomaly bands, and alarm actions, are not evaluated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .mends import datum_dimension_key, distribution_datum
from .topology import MetricPoint

log = logging.getLogger(__name__)

#: How long the sandbox keeps metric data points (AWS keeps them for 15 months; a laptop's
#: memory and the saved state would not).
RETENTION = timedelta(hours=24)

_OPERATORS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}


def utcnow() -> datetime:
    """Now as moto stores time: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Verdict:
    """The state an evaluation reached, with AWS's reason text and data."""

    state: str
    reason: str
    reason_data: str


def evaluate_alarm(alarm: Any, data: Iterable[Any], now: datetime) -> Verdict | None:
    """The state ``alarm`` should be in at ``now`` given metric ``data``; None to leave it as it is.

    ``data`` may hold any data points; those of the alarm's metric (exact dimension set, unit
    when the alarm names one) in its evaluation range are used.
    """
    from moto.cloudwatch.models import Statistics

    rule = _OPERATORS.get(alarm.comparison_operator)
    if rule is None or alarm.rule is not None or not alarm.metric_name or not alarm.period:
        return None
    compare, words = rule
    period = timedelta(seconds=int(alarm.period))
    periods = int(alarm.evaluation_periods or 1)
    needed = int(alarm.datapoints_to_alarm or periods)
    stat = alarm.extended_statistic or alarm.statistic
    wanted = frozenset((d.name, d.value) for d in alarm.dimensions)
    earliest = now - period * periods
    points = [
        d
        for d in data
        if d.namespace == alarm.namespace
        and d.name == alarm.metric_name
        and earliest < d.timestamp <= now
        and (not alarm.unit or d.unit == alarm.unit)
        and datum_dimension_key(d) == wanted
    ]
    # Newest period first: (start, value or None when the period has no data).
    values: list[tuple[datetime, float | None]] = []
    for index in range(periods):
        end = now - period * index
        start = end - period
        in_period = [d for d in points if start < d.timestamp <= end]
        value = None
        if in_period:
            stats = Statistics([stat], start)
            stats.metric_data = in_period
            found = stats.get_statistics_for_type(stat)
            value = None if found is None else float(found)
        values.append((start, value))

    present = [(start, v) for start, v in values if v is not None]
    missing = periods - len(present)
    treat = alarm.treat_missing_data or "missing"
    threshold = float(alarm.threshold)
    breaching = sum(1 for _, v in present if compare(v, threshold))
    if treat == "breaching":
        breaching += missing
    elif not present:
        if treat == "ignore":
            return None
        if treat == "missing":
            return _verdict(
                alarm,
                "INSUFFICIENT_DATA",
                f"Insufficient Data: {periods} datapoint{'s were' if periods > 1 else ' was'} unknown.",
                values,
                now,
                stat,
            )
    elif treat in ("missing", "ignore"):
        needed = min(needed, len(present))

    shown = ", ".join(f"{v:g} ({start:%d/%m/%y %H:%M:%S})" for start, v in present) or "no data"
    if breaching >= needed:
        reason = (
            f"Threshold Crossed: {breaching} out of the last {periods} datapoints [{shown}] "
            f"{'was' if breaching == 1 else 'were'} {words} the threshold ({threshold:g}) "
            f"(minimum {needed} datapoint{'s' if needed > 1 else ''} for OK -> ALARM transition)."
        )
        return _verdict(alarm, "ALARM", reason, values, now, stat)
    calm = (periods if treat in ("breaching", "notBreaching") else len(present)) - breaching
    reason = (
        f"Threshold Crossed: {calm} out of the last {periods} datapoints [{shown}] "
        f"{'was' if calm == 1 else 'were'} not {words} "
        f"the threshold ({threshold:g}) (minimum {needed} datapoint{'s' if needed > 1 else ''} "
        "for ALARM -> OK transition)."
    )
    return _verdict(alarm, "OK", reason, values, now, stat)


def _verdict(
    alarm: Any, state: str, reason: str, values: list[tuple[datetime, float | None]], now: datetime, stat: str
) -> Verdict:
    data = {
        "version": "1.0",
        "queryDate": f"{now:%Y-%m-%dT%H:%M:%S.000+0000}",
        "startDate": f"{values[-1][0]:%Y-%m-%dT%H:%M:%S.000+0000}",
        "statistic": stat,
        "period": int(alarm.period),
        "recentDatapoints": [v for _, v in values if v is not None],
        "threshold": float(alarm.threshold),
        "evaluatedDatapoints": [
            {"timestamp": f"{start:%Y-%m-%dT%H:%M:%S.000+0000}", **({"value": v} if v is not None else {})}
            for start, v in values
        ],
    }
    return Verdict(state, reason, json.dumps(data))


def evaluate_alarms(now: datetime | None = None) -> int:
    """Evaluate every metric alarm in this process's moto; the number of alarms that changed state."""
    from moto.cloudwatch.models import cloudwatch_backends

    now = now or utcnow()
    changed = 0
    backend: Any
    for _account, _region, backend in list(cloudwatch_backends.iter_backends()):
        alarms = [a for a in list(backend.alarms.values()) if a.rule is None and a.metric_name]
        if not alarms:
            continue
        longest = max(timedelta(seconds=int(a.period or 60) * int(a.evaluation_periods or 1)) for a in alarms)
        names = {(a.namespace, a.metric_name) for a in alarms}
        recent = [
            d for d in backend.metric_data if (d.namespace, d.name) in names and d.timestamp > now - longest
        ]
        for alarm in alarms:
            verdict = evaluate_alarm(alarm, recent, now)
            if verdict is not None and verdict.state != alarm.state_value:
                log.info("alarm %s: %s -> %s", alarm.name, alarm.state_value, verdict.state)
                alarm.update_state(verdict.reason, verdict.reason_data, verdict.state)
                changed += 1
    return changed


def prune_metric_data(now: datetime | None = None, retention: timedelta = RETENTION) -> int:
    """Drop data points older than ``retention``; how many were dropped."""
    from moto.cloudwatch.models import cloudwatch_backends

    cutoff = (now or utcnow()) - retention
    dropped = 0
    backend: Any
    for _account, _region, backend in list(cloudwatch_backends.iter_backends()):
        kept = [d for d in backend.metric_data if d.timestamp >= cutoff]
        dropped += len(backend.metric_data) - len(kept)
        backend.metric_data = kept
    return dropped


def store_points(points: Iterable[MetricPoint], account_id: str, region: str, namespace: str) -> None:
    """Store the data plane's points in moto's CloudWatch, as PutMetricData would."""
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[account_id][region]
    metric_data: list[dict[str, Any]] = []
    for point in points:
        dimensions = [{"Name": name, "Value": value} for name, value in point.dimensions]
        timestamp = datetime.fromtimestamp(point.timestamp, UTC).replace(tzinfo=None)
        if point.values:
            counts = list(point.counts) or [1.0] * len(point.values)
            backend.metric_data.append(
                distribution_datum(
                    namespace, point.name, list(point.values), counts, dimensions, timestamp, point.unit
                )
            )
        else:
            metric_data.append(
                {
                    "MetricName": point.name,
                    "Value": point.value,
                    "Unit": point.unit,
                    "Dimensions": dimensions,
                    "Timestamp": timestamp,
                }
            )
    if metric_data:
        backend.put_metric_data(namespace, metric_data)


class AlarmEvaluator:
    """A background thread that evaluates alarms (and prunes old data) every ``interval_s``.

    ``lock`` is held while it reads and changes moto's models (the sandbox serialises requests
    with it); pass None for a test's ThreadedMotoServer.
    """

    def __init__(self, interval_s: float = 5.0, lock: threading.RLock | None = None) -> None:
        self.interval_s = interval_s
        self._lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labkit-alarms", daemon=True)

    def start(self) -> AlarmEvaluator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        passes = 0
        while not self._stop.wait(self.interval_s):
            passes += 1
            try:
                with self._lock if self._lock is not None else contextlib.nullcontext():
                    evaluate_alarms()
                    if passes % 60 == 0:
                        prune_metric_data()
            except Exception:  # keep evaluating; a bad alarm must not stop the others
                log.exception("evaluating alarms failed")

