"""The analysis gate's judgement, as a pure function, and the probe's share of the evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from labkit.deploy.analysis import (
    AnalysisInput,
    Evidence,
    TargetHealth,
    Verdict,
    decide,
    fresh_alarms,
    metric_dimension,
    probe_evidence,
)
from labkit.deploy.probe import COLUMNS
from labkit.deploy.strategy import Thresholds
from labkit.errors import AnalysisError

T = Thresholds(min_requests=20, max_5xx_rate=0.05, max_p95_ms=500)
HEALTHY = (TargetHealth("i-1", "healthy"), TargetHealth("i-2", "healthy"))


def judge(**kwargs: Any) -> Verdict:
    kwargs.setdefault("color", "green")
    kwargs.setdefault("targets", HEALTHY)
    return decide(AnalysisInput(**kwargs), T)


def cw(requests: int, errors: int = 0, p95: float | None = 20.0) -> Evidence:
    return Evidence("cloudwatch", requests, errors, p95)


def pr(requests: int, errors: int = 0, p95: float | None = 20.0) -> Evidence:
    return Evidence("probe", requests, errors, p95)


def test_healthy_targets_and_clean_traffic_pass() -> None:
    verdict = judge(cloudwatch=cw(200, 2, 40.0), probe=pr(100, 0, 35.0))
    assert verdict == Verdict(
        "pass",
        "2/2 green targets healthy; "
        "cloudwatch: 200 requests, 2 5xx (1.0% <= 5.0%), p95 40 ms <= 500 ms; "
        "probe: 100 requests, 0 5xx (0.0% <= 5.0%), p95 35 ms <= 500 ms",
    )
    assert verdict.passed


def test_a_5xx_rate_above_the_limit_fails() -> None:
    verdict = judge(cloudwatch=cw(100, 30))
    assert verdict.outcome == "fail" and not verdict.passed
    assert verdict.reason == "green 5xx rate too high, cloudwatch: 100 requests, 30 5xx (30.0% > 5.0%)"


def test_exactly_at_the_limit_passes() -> None:
    assert judge(cloudwatch=cw(100, 5)).outcome == "pass"
    assert judge(cloudwatch=cw(100, 6)).outcome == "fail"


def test_slow_p95_fails() -> None:
    verdict = judge(probe=pr(50, 0, 812.4))
    assert verdict.outcome == "fail"
    assert verdict.reason == "green too slow, probe: p95 812 ms > 500 ms"


def test_either_source_failing_fails_even_when_the_other_passes() -> None:
    verdict = judge(cloudwatch=cw(500, 0), probe=pr(40, 12))
    assert verdict.outcome == "fail"
    assert "probe: 40 requests, 12 5xx (30.0% > 5.0%)" in verdict.reason


@pytest.mark.parametrize(
    "evidence",
    [
        {},
        {"cloudwatch": cw(0)},
        {"cloudwatch": cw(19, 19)},  # every one an error, but too few to judge
        {"cloudwatch": cw(10, 3), "probe": pr(19, 1)},
    ],
)
def test_little_traffic_is_inconclusive_never_a_failure(evidence: dict[str, Evidence]) -> None:
    verdict = judge(**evidence)
    assert verdict.outcome == "inconclusive", verdict
    assert "too little traffic to judge green" in verdict.reason
    assert verdict.reason.endswith("need 20 requests")


def test_the_inconclusive_reason_shows_what_was_seen() -> None:
    assert judge(cloudwatch=cw(10, 3), probe=pr(19, 1)).reason == (
        "too little traffic to judge green: cloudwatch 10 (3 5xx), probe 19 (1 5xx); need 20 requests"
    )
    assert judge().reason == "too little traffic to judge green: no traffic source; need 20 requests"


def test_one_source_with_enough_traffic_decides() -> None:
    # CloudWatch has not published a period yet (on AWS, a minute or more late); the probe has enough.
    verdict = judge(cloudwatch=cw(0), probe=pr(60, 0, 30.0))
    assert verdict.outcome == "pass"
    assert "cloudwatch" not in verdict.reason and "probe: 60 requests" in verdict.reason


def test_unknown_p95_is_said_and_does_not_block() -> None:
    verdict = judge(cloudwatch=cw(100, 0, None))
    assert verdict.outcome == "pass"
    assert verdict.reason.endswith("cloudwatch: 100 requests, 0 5xx (0.0% <= 5.0%), p95 unknown")


def test_no_registered_targets_fails_whatever_the_traffic() -> None:
    verdict = judge(targets=(), probe=pr(100))
    assert verdict == Verdict("fail", "the green target group has no registered targets (no capacity)")


def test_any_target_not_healthy_fails_and_is_named() -> None:
    targets = (
        TargetHealth("i-1", "healthy"),
        TargetHealth("i-2", "unhealthy", "Target.FailedHealthChecks"),
        TargetHealth("i-3", "initial"),
    )
    verdict = judge(targets=targets, cloudwatch=cw(5))  # little traffic does not hide bad health
    assert verdict.outcome == "fail"
    assert verdict.reason == (
        "2 of 3 green targets not healthy: i-2 unhealthy (Target.FailedHealthChecks), i-3 initial"
    )


def test_an_alarm_in_alarm_fails() -> None:
    verdict = judge(alarms_in_alarm=("staging-5xx", "staging-latency"), cloudwatch=cw(100))
    assert verdict == Verdict("fail", "alarm in ALARM: staging-5xx, staging-latency")


def test_every_finding_is_in_a_failure_reason() -> None:
    verdict = judge(
        targets=(TargetHealth("i-9", "draining"),),
        alarms_in_alarm=("a",),
        cloudwatch=cw(100, 50, 900.0),
    )
    assert verdict.reason.split("; ") == [
        "1 of 1 green targets not healthy: i-9 draining",
        "alarm in ALARM: a",
        "green 5xx rate too high, cloudwatch: 100 requests, 50 5xx (50.0% > 5.0%)",
        "green too slow, cloudwatch: p95 900 ms > 500 ms",
    ]


def test_metric_dimensions_from_arns() -> None:
    lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/staging-alb/50dc6c495c0c9188"
    tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/staging-green/73e2d6bc24d8a067"
    assert metric_dimension(lb) == "app/staging-alb/50dc6c495c0c9188"
    assert metric_dimension(tg) == "targetgroup/staging-green/73e2d6bc24d8a067"


@pytest.mark.parametrize(
    "arn",
    [
        "staging-green",
        "arn:aws:elasticloadbalancing:us-east-1:123:loadbalancer/net/nlb/1",
        "arn:aws:s3:::bucket",
    ],
)
def test_other_arns_are_refused(arn: str) -> None:
    with pytest.raises(AnalysisError, match="not an application load balancer or target group ARN"):
        metric_dimension(arn)


# -- the probe's evidence ------------------------------------------------------------------

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _frame(rows: list[tuple[float, int, str | None, float | None]]) -> pd.DataFrame:
    records = [
        {
            "elapsed_s": t,
            "time": pd.Timestamp(START + timedelta(seconds=t)),
            "phase": "p",
            "status": status,
            "ok": 200 <= status < 400,
            "color": color,
            "version": None,
            "instance_id": None,
            "latency_ms": latency,
            "lag_ms": 0.0,
            "error": None,
        }
        for t, status, color, latency in rows
    ]
    return pd.DataFrame(records, columns=COLUMNS)


def test_probe_evidence_counts_the_new_color_and_unsigned_failures() -> None:
    frame = _frame(
        [(1, 200, "blue", 5.0)] * 50  # the old color: not evidence about green
        + [(2, 200, "green", float(ms)) for ms in range(1, 21)]
        + [(3, 500, "green", 2.0)] * 3
        + [(4, 0, None, None), (4, 502, None, 1.0)]  # no answer, an LB error page: counted against green
    )
    evidence = probe_evidence(frame, "green")
    assert evidence == Evidence(
        "probe", requests=25, errors_5xx=5, p95_ms=pytest.approx(18.9)
    )  # 23 green answers
    assert evidence.error_rate == pytest.approx(0.2)


def test_probe_evidence_is_limited_to_the_window() -> None:
    frame = _frame([(t, 500 if t < 10 else 200, "green", 1.0) for t in range(20)])
    evidence = probe_evidence(frame, "green", START + timedelta(seconds=10), START + timedelta(seconds=15))
    assert (evidence.requests, evidence.errors_5xx) == (5, 0)
    assert probe_evidence(frame, "green").errors_5xx == 10


def test_probe_evidence_with_nothing_for_the_color() -> None:
    assert probe_evidence(_frame([(1, 200, "blue", 1.0)]), "green") == Evidence("probe", 0, 0, None)


def test_the_old_color_breaking_during_a_step_fails_the_new_one() -> None:
    """A one-step rename: the new release writes fine, the old one (still serving) cannot."""
    verdict = judge(probe=pr(30), serving=pr(270, 270), serving_color="blue")
    assert verdict.outcome == "fail"
    assert verdict.reason == (
        "blue, still serving, answers 5xx too: probe: 270 requests, 270 5xx (100.0% > 5.0%); "
        "the deployment broke what the colors share (its database migration?)"
    )
    # Within the limit, or too few requests to judge, the old color does not count.
    assert judge(probe=pr(30), serving=pr(270, 10), serving_color="blue").outcome == "pass"
    assert judge(probe=pr(30), serving=pr(10, 10), serving_color="blue").outcome == "pass"


def test_the_old_colors_evidence_is_its_own_answers_only() -> None:
    """Unsigned failures (no answer, an LB page) go against the new color, never twice."""
    frame = _frame([(1, 500, "blue", 1.0)] * 4 + [(1, 200, "blue", 1.0)] * 6 + [(2, 0, None, None)] * 5)
    assert probe_evidence(frame, "blue", unsigned=False) == Evidence("probe", 10, 4, 1.0)
    assert probe_evidence(frame, "green").errors_5xx == 5


def test_probe_evidence_wants_aware_times() -> None:
    with pytest.raises(AnalysisError, match="has no time zone"):
        probe_evidence(_frame([]), "green", datetime(2030, 1, 1))


def ck(requests: int, errors: int = 0, p95: float | None = 20.0) -> Evidence:
    return Evidence("check", requests, errors, p95)


def test_check_traffic_alone_is_evidence_enough() -> None:
    verdict = judge(check=ck(40))
    assert verdict.outcome == "pass"
    assert "check: 40 requests, 0 5xx" in verdict.reason


def test_check_traffic_fails_a_bad_release_with_no_user_traffic() -> None:
    verdict = judge(check=ck(40, 12), cloudwatch=cw(0), probe=pr(0))
    assert verdict.outcome == "fail"
    assert verdict.reason == "green 5xx rate too high, check: 40 requests, 12 5xx (30.0% > 5.0%)"


def test_a_stale_alarm_is_reported_and_does_not_fail() -> None:
    verdict = judge(check=ck(40), stale_alarms=("bg-green-unhealthy-hosts (why)",))
    assert verdict.outcome == "pass"
    assert verdict.reason.endswith("stale ALARM not counted: bg-green-unhealthy-hosts (why)")


class FakeCloudWatch:
    """get_metric_statistics over a fixed list of data points, recording what was asked."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        self.points = points
        self.asked: list[dict[str, Any]] = []

    def get_metric_statistics(self, **query: Any) -> dict[str, Any]:
        self.asked.append(query)
        return {"Datapoints": self.points}


NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=2)
UNHEALTHY = {
    "AlarmName": "unhealthy",
    "StateValue": "ALARM",
    "Namespace": "AWS/ApplicationELB",
    "MetricName": "UnHealthyHostCount",
    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/g/1"}],
    "Statistic": "Maximum",
    "Period": 10,
    "Threshold": 0.0,
    "ComparisonOperator": "GreaterThanThreshold",
}
MATH = {"AlarmName": "rate", "StateValue": "ALARM", "Metrics": [{"Id": "rate"}]}


def fresh(alarms: list[dict[str, Any]], points: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
    return fresh_alarms(
        FakeCloudWatch(points), alarms, since=SINCE, start=NOW, end=NOW + timedelta(seconds=5)
    )


def test_a_single_metric_alarm_counts_only_if_its_metric_breaches_in_the_window() -> None:
    # An earlier fleet left the alarm in ALARM; this step's window has only 0s: stale.
    old = {**UNHEALTHY, "StateUpdatedTimestamp": SINCE - timedelta(minutes=1)}
    counted, stale = fresh([old], [{"Maximum": 0.0}])
    assert counted == set() and stale == {"unhealthy": "its metric does not breach in this step's window"}
    # The same alarm with a breaching point in the window counts, whenever its state changed.
    assert fresh([old], [{"Maximum": 0.0}, {"Maximum": 1.0}])[0] == {"unhealthy"}
    # And one that turned ALARM during the deployment on old data points still needs a breach now.
    late = {**UNHEALTHY, "StateUpdatedTimestamp": NOW}
    assert fresh([late], [])[0] == set()


def test_the_window_is_read_with_the_alarms_own_statistic_and_period() -> None:
    cloudwatch = FakeCloudWatch([{"ExtendedStatistics": {"p95": 2.5}}])
    slow = {**UNHEALTHY, "MetricName": "TargetResponseTime", "ExtendedStatistic": "p95", "Threshold": 1.0}
    del slow["Statistic"]
    counted, _ = fresh_alarms(cloudwatch, [slow], since=SINCE, start=NOW, end=NOW + timedelta(seconds=5))
    assert counted == {"unhealthy"}
    (query,) = cloudwatch.asked
    assert (query["ExtendedStatistics"], query["Period"], query["StartTime"]) == (["p95"], 10, NOW)


def test_a_metric_math_alarm_counts_when_its_state_changed_during_the_deployment() -> None:
    during = {**MATH, "StateUpdatedTimestamp": SINCE + timedelta(seconds=30)}
    before = {**MATH, "StateUpdatedTimestamp": SINCE - timedelta(seconds=30)}
    assert fresh([during], [])[0] == {"rate"}
    counted, stale = fresh([before], [])
    assert counted == set() and stale["rate"].startswith("in ALARM since 11:57:30, before this deployment")


def test_without_a_deployment_start_every_alarm_counts() -> None:
    counted, stale = fresh_alarms(FakeCloudWatch([]), [UNHEALTHY, MATH], since=None, start=NOW, end=NOW)
    assert counted == {"unhealthy", "rate"} and stale == {}
