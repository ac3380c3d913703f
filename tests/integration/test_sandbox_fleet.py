"""Releases with faults on the session's sandbox: what the instances, the load balancer, its
metrics and the alarms make of them, end to end (boto3 stacks, real app processes)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit import sandbox as sandbox_service
from tests.conftest import (
    Boto3Stack,
    RunningSandbox,
    build_boto3_stack,
    target_states,
    upload_artifact,
    wait_for,
)

pytestmark = pytest.mark.integration


def make_stack(
    sandbox: RunningSandbox, out: Path, faults: dict[str, str | float], capacity: int, delay_s: int = 2
) -> Boto3Stack:
    """One blue fleet (all traffic) running a release with ``faults``; green has no instances."""
    name = f"fleet-{uuid.uuid4().hex[:6]}"
    bucket = f"{name}-artifacts"
    sandbox.target.client("s3").create_bucket(Bucket=bucket)
    upload_artifact(sandbox.target, bucket, "3.0.0", out, faults)
    return build_boto3_stack(
        sandbox.target,
        name,
        versions={"blue": "3.0.0", "green": "3.0.0"},
        capacity={"blue": capacity, "green": 0},
        weights={"blue": 100, "green": 0},
        deregistration_delay_s=delay_s,
    )


def get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def delete(sandbox: RunningSandbox, stack: Boto3Stack) -> None:
    sandbox.target.client("autoscaling").delete_auto_scaling_group(
        AutoScalingGroupName=stack.asgs["blue"], ForceDelete=True
    )


def test_a_release_answering_500s_sets_off_a_5xx_alarm(sandbox: RunningSandbox, tmp_path: Path) -> None:
    stack = make_stack(sandbox, tmp_path, {"error_rate": 1.0}, capacity=1)
    blue = stack.target_groups["blue"]
    cloudwatch = sandbox.target.client("cloudwatch")
    dimensions = [
        {"Name": "LoadBalancer", "Value": stack.load_balancer_arn.split(":loadbalancer/")[1]},
        {"Name": "TargetGroup", "Value": blue.split(":")[-1]},
    ]
    alarm = f"{stack.name}-5xx"
    cloudwatch.put_metric_alarm(
        AlarmName=alarm, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
        Dimensions=dimensions, Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=5,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
    )  # fmt: skip
    wait_for("the target to turn healthy", lambda: set(target_states(sandbox.target, blue).values())
             == {("healthy", None)})
    url = sandbox_service.alb_url(stack.dns_name)
    statuses = [get(url + "/")[0] for _ in range(20)]
    assert statuses == [500] * 20

    def alarm_state() -> str:
        return str(cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"])

    # The plane publishes every 10 s; alarms are evaluated every 5 s.
    wait_for("the alarm", lambda: alarm_state() == "ALARM", timeout_s=30)
    now = datetime.now(UTC)
    counted = cloudwatch.get_metric_statistics(
        Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count", Dimensions=dimensions,
        StartTime=now - timedelta(minutes=5), EndTime=now, Period=300, Statistics=["Sum"],
    )["Datapoints"]  # fmt: skip
    assert sum(point["Sum"] for point in counted) == 20
    delete(sandbox, stack)


def test_a_release_that_is_never_ready_turns_unhealthy_and_still_serves(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    stack = make_stack(sandbox, tmp_path, {"ready": "fail"}, capacity=1)
    blue = stack.target_groups["blue"]
    started = time.monotonic()
    (instance_id,) = wait_for("a registered target", lambda: list(target_states(sandbox.target, blue)))
    unhealthy = wait_for(
        "the target to turn unhealthy",
        lambda: target_states(sandbox.target, blue)[instance_id][0] == "unhealthy",
        timeout_s=40,
    )
    assert unhealthy and time.monotonic() - started >= 5  # two failed checks, 5 s apart
    assert target_states(sandbox.target, blue)[instance_id] == ("unhealthy", "Target.ResponseCodeMismatch")
    # Every target of the group is unhealthy: the load balancer fails open and still uses them.
    status, body = get(sandbox_service.alb_url(stack.dns_name) + "/")
    assert (status, body["instance_id"]) == (200, instance_id)
    delete(sandbox, stack)


def test_scale_in_lets_in_flight_requests_finish(sandbox: RunningSandbox, tmp_path: Path) -> None:
    stack = make_stack(sandbox, tmp_path, {"latency_ms": 2000}, capacity=2, delay_s=5)
    blue = stack.target_groups["blue"]
    autoscaling = sandbox.target.client("autoscaling")
    wait_for("two healthy targets", lambda: [s for s, _ in target_states(sandbox.target, blue).values()]
             == ["healthy", "healthy"])
    url = sandbox_service.alb_url(stack.dns_name)

    # Eight slow requests (2 s each) in flight across both instances, then one instance goes.
    results: list[tuple[int, dict[str, str]]] = []
    requests = [threading.Thread(target=lambda: results.append(get(url + "/"))) for _ in range(8)]
    for request in requests:
        request.start()
    time.sleep(0.5)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asgs["blue"], DesiredCapacity=1)
    for request in requests:
        request.join(30)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.asgs["blue"]])
    (survivor,) = [i["InstanceId"] for i in described["AutoScalingGroups"][0]["Instances"]]
    assert [status for status, _ in results] == [200] * 8
    assert len({body["instance_id"] for _, body in results}) == 2  # both instances had requests

    # The terminated instance drains (no new requests), then leaves and its app stops.
    assert {get(url + "/")[1]["instance_id"] for _ in range(3)} == {survivor}
    registered = lambda: list(target_states(sandbox.target, blue))  # noqa: E731
    wait_for("the drain to end", lambda: registered() == [survivor], timeout_s=15)
    (gone,) = {body["instance_id"] for _, body in results} - {survivor}
    running = lambda: {i["instance_id"] for i in sandbox_service.instances()}  # noqa: E731
    wait_for("the terminated instance's app to stop", lambda: gone not in running(), timeout_s=20)
    assert survivor in running()
    delete(sandbox, stack)
