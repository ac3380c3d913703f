"""CloudWatch as the sandbox runs it: metric alarms evaluated, the data plane's metrics stored.

Stock moto stores alarms but never evaluates them. :func:`evaluate_alarms` does what CloudWatch
does every minute, and the sandbox calls it every few seconds so lessons need not wait:

- each metric alarm's statistic (``Sum``, ``Average``, ``Minimum``, ``Maximum``, ``SampleCount``
  or a percentile such as ``p99``) over each of its last ``EvaluationPeriods`` periods, the
  newest ending now (windows slide with the clock instead of waiting for a period to close);
  for a metric math alarm, its expression over its metrics' statistics, period by period
  (arithmetic, comparisons, ``AND``/``OR``, ``IF``, ``MIN``, ``MAX``, ``ABS``);
- ``ALARM`` when at least ``DatapointsToAlarm`` (default: all) of them breach the threshold by
  the comparison operator, else ``OK``;
- missing periods per ``TreatMissingData``: ``breaching``, ``notBreaching``, ``ignore`` (keep
  the state when nothing is there) or ``missing`` (the default: ``INSUFFICIENT_DATA`` when
  nothing is there; with some data, the periods present decide, needing at most as many
  breaching ones as are present);
- a change of state sets ``StateValue``, ``StateReason`` and ``StateReasonData`` as AWS words
  them, and leaves an alarm history item (see :mod:`labkit.sandbox.server.mends`).

Anomaly-band alarms, other metric math functions and alarm actions are not evaluated; such an
alarm keeps its state.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import operator
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from labkit.sandbox.server.mends import datum_dimension_key, distribution_datum
from labkit.sandbox.server.topology import MetricPoint

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


@dataclass(frozen=True)
class _Series:
    """One metric an alarm reads: which data points, and the statistic over each period."""

    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    unit: str | None
    stat: str

    def value(self, data: Iterable[Any], start: datetime, end: datetime) -> float | None:
        from moto.cloudwatch.models import Statistics

        points = [
            d
            for d in data
            if start < d.timestamp <= end
            and d.namespace == self.namespace
            and d.name == self.name
            and (not self.unit or d.unit == self.unit)
            and datum_dimension_key(d) == self.dimensions
        ]
        if not points:
            return None
        stats = Statistics([self.stat], start)
        stats.metric_data = points
        found = stats.get_statistics_for_type(self.stat)
        return None if found is None else float(found)


def _alarm_reader(alarm: Any) -> tuple[Callable[[Iterable[Any], datetime, datetime], float | None], str, int]:
    """How to compute the alarm's value for one period; its statistic's name; its period in seconds.

    Raises ValueError for an alarm the sandbox does not evaluate.
    """
    if alarm.metric_name:
        series = _Series(
            alarm.namespace,
            alarm.metric_name,
            frozenset((d.name, d.value) for d in alarm.dimensions),
            alarm.unit,
            alarm.extended_statistic or alarm.statistic,
        )
        return series.value, series.stat, int(alarm.period or 0)
    queries = list(alarm.metric_data_queries or [])
    metrics: dict[str, _Series] = {}
    period = 0
    for query in queries:
        stat = query.metric_stat
        if stat is not None:
            metric = stat.metric
            dims = frozenset((d.name, d.value) for d in metric.dimensions)
            metrics[query.id] = _Series(metric.namespace, metric.metric_name, dims, stat.unit, stat.stat)
            period = period or int(stat.period or 0)
    returned = [q for q in queries if q.return_data in (True, "true", "True")] or [
        q for q in queries if q.expression
    ]
    if not returned or not returned[0].expression:
        raise ValueError("no expression to evaluate")
    expression = returned[0].expression
    tree = compile_expression(expression)

    def value(data: Iterable[Any], start: datetime, end: datetime) -> float | None:
        window = [d for d in data if start < d.timestamp <= end]
        inputs = {qid: series.value(window, start, end) for qid, series in metrics.items()}
        return evaluate_expression(tree, inputs)

    return value, expression, period


def evaluate_alarm(alarm: Any, data: Iterable[Any], now: datetime) -> Verdict | None:
    """The state ``alarm`` should be in at ``now`` given metric ``data``; None to leave it as it is.

    ``data`` may hold any data points; those of the alarm's metrics (exact dimension set, unit
    when the alarm names one) in its evaluation range are used. Metric math alarms are evaluated
    when their expression uses arithmetic, comparisons, AND/OR and IF/MIN/MAX/ABS (see
    :func:`compile_expression`).
    """
    rule = _OPERATORS.get(alarm.comparison_operator)
    if rule is None or alarm.rule is not None:
        return None
    try:
        read, stat, seconds = _alarm_reader(alarm)
    except ValueError:
        return None
    if seconds <= 0:
        return None
    compare, words = rule
    period = timedelta(seconds=seconds)
    periods = int(alarm.evaluation_periods or 1)
    needed = int(alarm.datapoints_to_alarm or periods)
    earliest = now - period * periods
    recent = [d for d in data if earliest < d.timestamp <= now]
    # Newest period first: (start, value or None when the period has no data).
    values: list[tuple[datetime, float | None]] = []
    for index in range(periods):
        end = now - period * index
        start = end - period
        values.append((start, read(recent, start, end)))

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
                seconds,
            )
    elif treat in ("missing", "ignore"):
        needed = min(needed, len(present))

    if not present:  # "breaching" or "notBreaching" with nothing received
        state = "ALARM" if breaching >= needed else "OK"
        treated = "Breaching" if treat == "breaching" else "NonBreaching"
        plural = periods > 1
        reason = (
            f"Threshold Crossed: no datapoints were received for {periods} period{'s' if plural else ''} "
            f"and {missing} missing datapoint{'s were' if plural else ' was'} treated as [{treated}]."
        )
        return _verdict(alarm, state, reason, values, now, stat, seconds)
    shown = ", ".join(f"{v:g} ({start:%d/%m/%y %H:%M:%S})" for start, v in present)
    if breaching >= needed:
        reason = (
            f"Threshold Crossed: {breaching} out of the last {periods} datapoints [{shown}] "
            f"{'was' if breaching == 1 else 'were'} {words} the threshold ({threshold:g}) "
            f"(minimum {needed} datapoint{'s' if needed > 1 else ''} for OK -> ALARM transition)."
        )
        return _verdict(alarm, "ALARM", reason, values, now, stat, seconds)
    calm = (periods if treat in ("breaching", "notBreaching") else len(present)) - breaching
    reason = (
        f"Threshold Crossed: {calm} out of the last {periods} datapoints [{shown}] "
        f"{'was' if calm == 1 else 'were'} not {words} "
        f"the threshold ({threshold:g}) (minimum {needed} datapoint{'s' if needed > 1 else ''} "
        "for ALARM -> OK transition)."
    )
    return _verdict(alarm, "OK", reason, values, now, stat, seconds)


def _verdict(
    alarm: Any,
    state: str,
    reason: str,
    values: list[tuple[datetime, float | None]],
    now: datetime,
    stat: str,
    period_s: int,
) -> Verdict:
    data = {
        "version": "1.0",
        "queryDate": f"{now:%Y-%m-%dT%H:%M:%S.000+0000}",
        "startDate": f"{values[-1][0]:%Y-%m-%dT%H:%M:%S.000+0000}",
        "statistic": stat,
        "period": period_s,
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
        alarms = [a for a in list(backend.alarms.values()) if a.rule is None]
        if not alarms:
            continue
        longest = max(_window(alarm) for alarm in alarms)
        recent = [d for d in backend.metric_data if d.timestamp > now - longest]
        for alarm in alarms:
            verdict = evaluate_alarm(alarm, recent, now)
            if verdict is not None and verdict.state != alarm.state_value:
                log.info("alarm %s: %s -> %s", alarm.name, alarm.state_value, verdict.state)
                alarm.update_state(verdict.reason, verdict.reason_data, verdict.state)
                changed += 1
    return changed


def _window(alarm: Any) -> timedelta:
    """How far back the alarm looks (zero for one the sandbox does not evaluate)."""
    try:
        _, _, seconds = _alarm_reader(alarm)
    except ValueError:
        return timedelta(0)
    return timedelta(seconds=seconds * int(alarm.evaluation_periods or 1))


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


# --- metric math (the subset alarms use) ---

_MATH_FUNCTIONS = {"IF", "MIN", "MAX", "ABS"}


def compile_expression(expression: str) -> ast.Expression:
    """Parse a metric math expression: numbers, query ids, ``+ - * /``, comparisons, ``AND``/``OR``
    (or ``&&``/``||``), ``IF(cond, a, b)``, ``MIN``, ``MAX``, ``ABS``. ValueError for anything else."""
    text = expression.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"\bAND\b", " and ", text)
    text = re.sub(r"\bOR\b", " or ", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expression!r}: {exc.msg}") from None
    allowed = (
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
        ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub, ast.UAdd, ast.And, ast.Or,
        ast.Gt, ast.GtE, ast.Lt, ast.LtE, ast.Eq, ast.NotEq,
    )  # fmt: skip
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            kind = type(node).__name__
            raise ValueError(f"{expression!r} uses {kind}, which the sandbox does not evaluate")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _MATH_FUNCTIONS and not node.keywords
        ):
            raise ValueError(f"{expression!r} calls a function the sandbox does not evaluate")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"{expression!r} has a constant that is not a number")
    return tree


def evaluate_expression(tree: ast.Expression, inputs: dict[str, float | None]) -> float | None:
    """The expression's value for one period; None when an input it needs has no data."""
    _binary: dict[type, Callable[[float, float], float]] = {
        ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    }  # fmt: skip
    _compare: dict[type, Callable[[float, float], bool]] = {
        ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne,
    }  # fmt: skip

    def run(node: ast.AST) -> float | None:
        if isinstance(node, ast.Expression):
            return run(node.body)
        if isinstance(node, ast.Constant):
            return float(cast(float, node.value))  # compile_expression admits numbers only
        if isinstance(node, ast.Name):
            return inputs.get(node.id)
        if isinstance(node, ast.UnaryOp):
            inner = run(node.operand)
            return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        if isinstance(node, ast.BinOp):
            left, right = run(node.left), run(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None  # metric math drops a period it cannot compute
            return _binary[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left = run(node.left)
            result = 1.0
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = run(comparator)
                if left is None or right is None:
                    return None
                result = result if _compare[type(op)](left, right) else 0.0
                left = right
            return result
        if isinstance(node, ast.BoolOp):
            parts = [run(value) for value in node.values]
            if any(p is None for p in parts):
                return None
            truths = [bool(p) for p in parts]
            return 1.0 if (all(truths) if isinstance(node.op, ast.And) else any(truths)) else 0.0
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [run(arg) for arg in node.args]
            name = node.func.id
            if name == "IF":
                if len(args) != 3 or args[0] is None:
                    return None
                return args[1] if args[0] else args[2]
            present = [a for a in args if a is not None]
            if not present:
                return None
            if name == "ABS":
                return abs(present[0])
            return min(present) if name == "MIN" else max(present)
        raise ValueError(f"cannot evaluate {ast.dump(node)}")

    return run(tree)

