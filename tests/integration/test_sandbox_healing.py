"""Auto Scaling's ELB health check on the session's sandbox: a fleet started before its artifact
existed is replaced after the grace period and heals by itself once the artifact is uploaded, as on
AWS (stock moto never replaced it). Real app processes and the sandbox's load balancer."""

from __future__ import annotations

import time
import urllib.request
import uuid
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

GRACE_S = 5


def instance_ids(sandbox: RunningSandbox, group: str) -> set[str]:
    autoscaling = sandbox.target.client("autoscaling")
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return {i["InstanceId"] for i in described["AutoScalingGroups"][0]["Instances"]}


def fleet_without_its_artifact(sandbox: RunningSandbox, prefix: str) -> Boto3Stack:
    """One blue instance (all traffic) of release 4.0.0, whose artifact is not in the bucket yet."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    sandbox.target.client("s3").create_bucket(Bucket=f"{name}-artifacts")
    return build_boto3_stack(
        sandbox.target,
        name,
        versions={"blue": "4.0.0", "green": "4.0.0"},
        capacity={"blue": 1, "green": 0},
        weights={"blue": 100, "green": 0},
    )


def test_a_fleet_started_before_its_artifact_heals_once_it_is_uploaded(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    stack = fleet_without_its_artifact(sandbox, "heal")
    autoscaling = sandbox.target.client("autoscaling")
    group, blue = stack.asgs["blue"], stack.target_groups["blue"]
    try:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=group, HealthCheckType="ELB", HealthCheckGracePeriod=GRACE_S
        )
        (first,) = instance_ids(sandbox, group)
        assert autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"] == []

        # The first instance has no app (no artifact): unhealthy, then replaced after the grace period.
        wait_for(
            "the first instance to be replaced",
            lambda: first not in instance_ids(sandbox, group),
            timeout_s=60,
        )
        activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
        terminated = [a for a in activities if a["Description"] == f"Terminating EC2 instance: {first}"]
        assert len(terminated) == 1
        assert "ELB system health check failure" in terminated[0]["Cause"]
        assert terminated[0]["StatusCode"] == "Successful"
        assert any(a["Description"].startswith("Launching a new EC2 instance: ") for a in activities)
        assert len(instance_ids(sandbox, group)) == 1  # the desired capacity is kept

        upload_artifact(sandbox.target, stack.bucket, "4.0.0", tmp_path)

        def healthy_ids() -> list[str] | None:
            states = target_states(sandbox.target, blue)
            return [i for i, state in states.items() if state[0] == "healthy"] or None

        healthy = wait_for("a healthy blue instance", healthy_ids, timeout_s=90)
        assert first not in healthy
        with urllib.request.urlopen(sandbox_service.alb_url(stack.dns_name) + "/", timeout=15) as response:
            assert response.status == 200

        # A healthy fleet stays as it is: no further replacement once it serves.
        settled = autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
        time.sleep(6)  # more than a health check interval (5 s) and many reconcile passes
        assert instance_ids(sandbox, group) == set(healthy)
        assert len(autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]) == len(
            settled
        )
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)


def test_a_group_with_ec2_health_checks_keeps_its_unhealthy_instance(
    sandbox: RunningSandbox,
) -> None:
    """AWS acts on ELB health only when the group asks for it (health_check_type "ELB")."""
    stack = fleet_without_its_artifact(sandbox, "keep")
    autoscaling = sandbox.target.client("autoscaling")
    group, blue = stack.asgs["blue"], stack.target_groups["blue"]
    try:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, HealthCheckGracePeriod=0)
        (first,) = instance_ids(sandbox, group)
        wait_for(
            "the instance to be unhealthy",
            lambda: target_states(sandbox.target, blue).get(first, ("",))[0] == "unhealthy",
            timeout_s=60,
        )
        assert instance_ids(sandbox, group) == {first}
        assert autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"] == []
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
