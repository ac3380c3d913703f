"""The analysis gate's inputs read back from moto: metrics, target health, alarms; then the verdict.

moto runs in a process of its own with the sandbox's mends (percentiles, exact dimension matching,
target health from a data plane). The data plane's word on each target comes from a JSON file this
test writes, so each test sets the health it needs; everything else is moto answering boto3.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from labkit.deploy.analysis import NAMESPACE, Evidence, TargetHealth, analyze, gather, metric_dimension
from labkit.deploy.probe import COLUMNS
from labkit.deploy.strategy import Thresholds
from labkit.errors import AnalysisError
from labkit.target import Target, sandbox
from tests.conftest import free_port

pytestmark = pytest.mark.integration

_SERVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from moto.server import ThreadedMotoServer
    from labkit.sandbox.server.mends import apply_mends
    from labkit.sandbox.server.topology import TargetHealthReport

    health_file = Path(sys.argv[2])

    def health(group_arn, target_id):
        state = json.loads(health_file.read_text()).get(target_id) if health_file.exists() else None
        return TargetHealthReport(*state) if state else None

    apply_mends(health)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # serve until the test closes stdin
    server.stop()
    """
)


@dataclass
class Stack:
    target: Target
    health_file: Path
    lb_arn: str
    green_arn: str
    blue_arn: str
    instances: list[str]

    def set_health(self, states: dict[str, tuple[str, ...]]) -> None:
        self.health_file.write_text(json.dumps(states))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    health_file = tmp_path_factory.mktemp("health") / "health.json"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port), str(health_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        target = sandbox(f"http://127.0.0.1:{port}")
        ec2, elbv2 = target.client("ec2"), target.client("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")[
                "Subnet"
            ]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        lb_arn = elbv2.create_load_balancer(Name="staging-alb", Subnets=subnets)["LoadBalancers"][0][
            "LoadBalancerArn"
        ]
        groups = {
            color: elbv2.create_target_group(Name=f"staging-{color}", Protocol="HTTP", Port=80, VpcId=vpc)[
                "TargetGroups"
            ][0]["TargetGroupArn"]
            for color in ("blue", "green")
        }
        # A listener forwarding to both groups puts them in use, as in the staging stack: a group no
        # listener forwards to reports its targets "unused", whatever the data plane says.
        elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": groups["blue"], "Weight": 90},
                            {"TargetGroupArn": groups["green"], "Weight": 10},
                        ]
                    },
                }
            ],
        )
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instances = [
            i["InstanceId"]
            for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, SubnetId=subnets[0])[
                "Instances"
            ]
        ]
        elbv2.register_targets(
            TargetGroupArn=groups["green"], Targets=[{"Id": i, "Port": 80} for i in instances]
        )
        yield Stack(target, health_file, lb_arn, groups["green"], groups["blue"], instances)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        assert server.stdout is not None
        server.stdout.close()


def _put(stack: Stack, group_arn: str, name: str, when: datetime, **value: Any) -> None:
    stack.target.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [
                    {"Name": "TargetGroup", "Value": metric_dimension(group_arn)},
                    {"Name": "LoadBalancer", "Value": metric_dimension(stack.lb_arn)},
                ],
                "Timestamp": when,
                **value,
            }
        ],
    )


_HOURS = itertools.count()


def _fresh_window() -> tuple[datetime, datetime]:
    """A two-minute window in an hour of its own, so one test's data never lands in another's window."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=next(_HOURS) + 1)
    return base, base + timedelta(minutes=2)


def _green_traffic(stack: Stack, start: datetime, requests: int, errors: int) -> None:
    middle = start + timedelta(seconds=30)
    _put(stack, stack.green_arn, "RequestCount", middle, Value=requests / 2, Unit="Count")
    _put(
        stack,
        stack.green_arn,
        "RequestCount",
        middle + timedelta(seconds=40),
        Value=requests / 2,
        Unit="Count",
    )
    if errors:
        _put(stack, stack.green_arn, "HTTPCode_Target_5XX_Count", middle, Value=errors, Unit="Count")
    # 90 answers in 10 ms, 8 in 20 ms, 2 in 500 ms: the p95 is 20 ms.
    _put(
        stack,
        stack.green_arn,
        "TargetResponseTime",
        middle,
        Values=[0.01, 0.02, 0.5],
        Counts=[90, 8, 2],
        Unit="Seconds",
    )
    # Decoys: the blue group's traffic, and green traffic just outside the window.
    _put(stack, stack.blue_arn, "RequestCount", middle, Value=999, Unit="Count")
    _put(stack, stack.blue_arn, "HTTPCode_Target_5XX_Count", middle, Value=500, Unit="Count")
    _put(stack, stack.green_arn, "RequestCount", start - timedelta(seconds=1), Value=777, Unit="Count")
    _put(
        stack,
        stack.green_arn,
        "HTTPCode_Target_5XX_Count",
        start + timedelta(minutes=2),
        Value=66,
        Unit="Count",
    )


def _gather(stack: Stack, start: datetime, end: datetime, **extra: Any) -> Any:
    return gather(
        stack.target,
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
        **extra,
    )


def test_reads_the_green_groups_metrics_in_the_window_and_passes(stack: Stack) -> None:
    stack.set_health({i: ("healthy",) for i in stack.instances})
    start, end = _fresh_window()
    _green_traffic(stack, start, requests=120, errors=1)

    inputs = _gather(stack, start, end)
    assert inputs.cloudwatch == Evidence("cloudwatch", requests=120, errors_5xx=1, p95_ms=pytest.approx(20.0))
    assert sorted(inputs.targets, key=lambda t: t.target_id) == [
        TargetHealth(i, "healthy") for i in sorted(stack.instances)
    ]
    assert inputs.alarms_in_alarm == () and inputs.probe is None

    verdict, _ = analyze(
        stack.target,
        Thresholds(min_requests=20, max_5xx_rate=0.01, max_p95_ms=100),
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
    )
    assert verdict.outcome == "pass", verdict.reason
    assert "cloudwatch: 120 requests, 1 5xx (0.8% <= 1.0%), p95 20 ms <= 100 ms" in verdict.reason


def test_errors_above_the_limit_fail(stack: Stack) -> None:
    stack.set_health({i: ("healthy",) for i in stack.instances})
    start, end = _fresh_window()
    _green_traffic(stack, start, requests=100, errors=30)
    verdict, inputs = analyze(
        stack.target,
        Thresholds(min_requests=20, max_5xx_rate=0.01, max_p95_ms=1000),
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
    )
    assert (inputs.cloudwatch.requests, inputs.cloudwatch.errors_5xx) == (100, 30)  # type: ignore[union-attr]
    assert verdict.outcome == "fail"
    assert verdict.reason == "green 5xx rate too high, cloudwatch: 100 requests, 30 5xx (30.0% > 1.0%)"


def test_an_empty_window_is_inconclusive(stack: Stack) -> None:
    stack.set_health({i: ("healthy",) for i in stack.instances})
    start, end = _fresh_window()
    inputs = _gather(stack, start, end)
    assert inputs.cloudwatch == Evidence("cloudwatch", 0, 0, None)
    verdict, _ = analyze(
        stack.target,
        Thresholds(),
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
    )
    assert verdict.outcome == "inconclusive"


def test_target_health_comes_from_describe_target_health(stack: Stack) -> None:
    sick, well = stack.instances
    stack.set_health(
        {sick: ("unhealthy", "Target.FailedHealthChecks", "Health checks failed"), well: ("healthy",)}
    )
    start, end = _fresh_window()
    inputs = _gather(stack, start, end)
    assert set(inputs.targets) == {
        TargetHealth(sick, "unhealthy", "Target.FailedHealthChecks"),
        TargetHealth(well, "healthy"),
    }
    verdict, _ = analyze(
        stack.target,
        Thresholds(),
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
    )
    assert verdict.outcome == "fail"
    assert f"1 of 2 green targets not healthy: {sick} unhealthy (Target.FailedHealthChecks)" in verdict.reason


def test_an_empty_target_group_fails_for_want_of_capacity(stack: Stack) -> None:
    start, end = _fresh_window()
    verdict, inputs = analyze(
        stack.target,
        Thresholds(),
        color="blue",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.blue_arn,
        start=start,
        end=end,
    )
    assert inputs.targets == ()
    assert verdict.reason == "the blue target group has no registered targets (no capacity)"


def test_alarm_states_are_read_and_a_missing_alarm_is_an_error(stack: Stack) -> None:
    stack.set_health({i: ("healthy",) for i in stack.instances})
    cloudwatch = stack.target.client("cloudwatch")
    for name in ("green-5xx", "green-latency"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace=NAMESPACE,
            MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName="green-5xx", StateValue="ALARM", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="green-latency", StateValue="OK", StateReason="test")
    start, end = _fresh_window()
    inputs = _gather(stack, start, end, alarm_names=["green-5xx", "green-latency"])
    assert inputs.alarms_in_alarm == ("green-5xx",)

    with pytest.raises(AnalysisError, match="No alarm named green-typo") as info:
        _gather(stack, start, end, alarm_names=["green-5xx", "green-typo"])
    assert "must not ignore an alarm" in str(info.value.hint)


def test_the_probes_frame_joins_the_evidence_for_the_same_window(stack: Stack) -> None:
    stack.set_health({i: ("healthy",) for i in stack.instances})
    start, end = _fresh_window()
    rows = [
        {
            "elapsed_s": float(s),
            "time": pd.Timestamp(start + timedelta(seconds=s)),
            "phase": "shift-10",
            "status": 200,
            "ok": True,
            "color": "green",
            "version": "2.0.0",
            "instance_id": "i-1",
            "latency_ms": 12.0,
            "lag_ms": 0.1,
            "error": None,
        }
        for s in range(-10, 130)  # ten before the window, ten after it
    ]
    inputs = _gather(stack, start, end, probe=pd.DataFrame(rows, columns=COLUMNS))
    assert inputs.probe == Evidence("probe", requests=120, errors_5xx=0, p95_ms=12.0)
    verdict, _ = analyze(
        stack.target,
        Thresholds(min_requests=50),
        color="green",
        load_balancer_arn=stack.lb_arn,
        target_group_arn=stack.green_arn,
        start=start,
        end=end,
        probe=pd.DataFrame(rows, columns=COLUMNS),
    )
    assert verdict.outcome == "pass" and "probe: 120 requests" in verdict.reason


def test_an_unknown_target_group_is_an_analysis_error(stack: Stack) -> None:
    start, end = _fresh_window()
    missing = stack.green_arn.rsplit("/", 1)[0] + "/0000000000000000"
    with pytest.raises(AnalysisError, match="Could not describe target health") as info:
        gather(
            stack.target,
            color="green",
            load_balancer_arn=stack.lb_arn,
            target_group_arn=missing,
            start=start,
            end=end,
        )
    assert "ARNs" in str(info.value.hint)
    with pytest.raises(AnalysisError, match=r"ends .* before it starts"):
        _gather(stack, end, start)
