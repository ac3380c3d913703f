"""The probe and the analysis gate on the real sandbox: traffic through its load balancer at 100
requests per second, then the gate reading what the load balancer published to CloudWatch."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit import sandbox as sandbox_service
from labkit.deploy.analysis import AnalysisInput, decide, gather
from labkit.deploy.probe import Probe, summarize
from labkit.deploy.strategy import Thresholds
from tests.conftest import RunningSandbox, build_boto3_stack, target_states, upload_artifact, wait_for

pytestmark = pytest.mark.integration

#: The sandbox load balancer's metric period (labkit.sandbox.server.lb: 10 s, aligned to the wall clock).
PERIOD_S = 10


def _floor(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp() / PERIOD_S) * PERIOD_S, UTC)


def test_probe_and_gate_through_the_sandbox_load_balancer(sandbox: RunningSandbox, tmp_path: Path) -> None:
    target = sandbox.target
    name = f"pg{uuid.uuid4().hex[:6]}"
    target.client("s3").create_bucket(Bucket=f"{name}-artifacts")
    upload_artifact(target, f"{name}-artifacts", "1.0.0", tmp_path)
    upload_artifact(target, f"{name}-artifacts", "2.0.0", tmp_path, faults={"error_rate": 0.3})
    stack = build_boto3_stack(
        target,
        name,
        versions={"blue": "1.0.0", "green": "2.0.0"},
        capacity={"blue": 1, "green": 1},
        weights={"blue": 70, "green": 30},
    )

    try:

        def both_healthy() -> bool:
            states = [
                s for arn in stack.target_groups.values() for s, _ in target_states(target, arn).values()
            ]
            return states == ["healthy", "healthy"]

        wait_for("one healthy target per color", both_healthy, timeout_s=90)
        url = sandbox_service.alb_url(stack.dns_name)

        start = datetime.now(UTC)
        probe = Probe(url + "/", rate=100, duration=12, phase="canary-30").start()
        assert probe.wait(timeout=120)
        end = datetime.now(UTC)
        frame = probe.results()

        # Every request answered by one of the two releases; only the faulty one failed.
        assert len(frame) == 1200
        assert set(frame["status"]) <= {200, 500} and (frame["status"] > 0).all()
        assert set(zip(frame["color"], frame["version"], strict=True)) == {
            ("blue", "1.0.0"),
            ("green", "2.0.0"),
        }
        by_color = frame.groupby("color")["ok"].agg(["size", "sum"])
        green_requests = int(by_color.loc["green", "size"])
        assert 0.2 < green_requests / 1200 < 0.4  # weights 70/30
        assert by_color.loc["blue", "sum"] == by_color.loc["blue", "size"]  # blue never failed
        green_errors = green_requests - int(by_color.loc["green", "sum"])
        assert 0.15 < green_errors / green_requests < 0.45  # error_rate 0.3
        summary = summarize(frame)
        assert (
            summary.loc["canary-30", "requests"] == 1200
            and summary.loc["canary-30", "failed"] == green_errors
        )

        # CloudWatch holds whole periods, stamped with their start and published when they end: ask for
        # the periods that cover the probe's run once the last one is out.
        window_start = _floor(start)
        window_end = _floor(end) + timedelta(seconds=PERIOD_S)

        def gathered(color: str) -> AnalysisInput:
            return gather(
                target,
                color=color,
                load_balancer_arn=stack.load_balancer_arn,
                target_group_arn=stack.target_groups[color],
                start=window_start,
                end=window_end,
                probe=frame,
            )

        green = wait_for(
            "the load balancer to publish the probe's periods",
            lambda: (
                g if (g := gathered("green")).cloudwatch and g.cloudwatch.requests >= green_requests else None
            ),
            timeout_s=3 * PERIOD_S,
        )
        # The load balancer counted exactly what the probe saw reach green.
        assert green.cloudwatch is not None and green.probe is not None
        assert green.cloudwatch.requests == green_requests
        assert green.cloudwatch.errors_5xx == green_errors
        assert green.cloudwatch.p95_ms is not None and green.cloudwatch.p95_ms > 0
        assert (green.probe.requests, green.probe.errors_5xx) == (green_requests, green_errors)

        thresholds = Thresholds(min_requests=20, max_5xx_rate=0.01, max_p95_ms=2000)
        verdict = decide(green, thresholds)
        assert verdict.outcome == "fail"
        assert f"cloudwatch: {green_requests} requests, {green_errors} 5xx" in verdict.reason
        assert f"probe: {green_requests} requests, {green_errors} 5xx" in verdict.reason

        # Each target group's last period is published on its own, so blue's may come a moment later.
        blue = wait_for(
            "the load balancer to publish blue's last period",
            lambda: (
                b
                if (b := gathered("blue")).cloudwatch and b.cloudwatch.requests >= 1200 - green_requests
                else None
            ),
            timeout_s=3 * PERIOD_S,
        )
        assert blue.cloudwatch is not None
        assert blue.cloudwatch.requests == 1200 - green_requests and blue.cloudwatch.errors_5xx == 0
        blue_verdict = decide(blue, thresholds)
        assert blue_verdict.outcome == "pass", blue_verdict.reason
        assert blue_verdict.reason.startswith("1/1 blue targets healthy; cloudwatch: ")
    finally:
        # Stop this test's app processes: the session's sandbox is shared.
        for group in stack.asgs.values():
            target.client("autoscaling").update_auto_scaling_group(
                AutoScalingGroupName=group, MinSize=0, DesiredCapacity=0
            )
