"""The sandbox's fidelity mends, each shown against the real sandbox and against stock moto.

Every test runs twice: on the session's sandbox (it must pass) and on a stock moto server in a
process of its own (marked ``xfail(strict=True)``: the test must *fail* there, which shows that it
detects what the mend changes). Stock moto runs in its own process because the mends patch moto's
classes process-wide.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labkit import sandbox as sandbox_service
from labkit.infra.terraform import Terraform
from labkit.target import Target
from labkit.target import sandbox as sandbox_target
from tests.conftest import (
    RunningSandbox,
    build_boto3_stack,
    free_port,
    target_states,
    upload_artifact,
    user_data,
    wait_for,
)

pytestmark = pytest.mark.integration

STOCK = pytest.param(
    "stock", marks=pytest.mark.xfail(strict=True, reason="stock moto lacks this mend (the test must see it)")
)


@pytest.fixture(scope="module")
def stock_moto() -> Iterator[Target]:
    """Stock moto's server (``python -m moto.server``) in its own process, no mends."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("stock moto server did not start")
            time.sleep(0.1)
        yield sandbox_target(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=[STOCK, "sandbox"])
def aws(request: pytest.FixtureRequest) -> Target:
    """The AWS API under test: stock moto (expected to fail) or the sandbox."""
    if request.param == "stock":
        return request.getfixturevalue("stock_moto")  # type: ignore[no-any-return]
    running: RunningSandbox = request.getfixturevalue("sandbox")
    return running.target


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_load_balancers_are_active_at_once(aws: Target) -> None:
    ec2, elb = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    created = elb.create_load_balancer(Name=unique("active"), Subnets=[subnet])["LoadBalancers"][0]
    assert created["State"]["Code"] == "active"


def test_target_health_reports_what_the_data_plane_observed(
    aws: Target, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = unique("health")
    aws.client("s3").create_bucket(Bucket=f"{name}-artifacts")
    upload_artifact(aws, f"{name}-artifacts", "1.0.0", tmp_path_factory.mktemp(name))
    stack = build_boto3_stack(
        aws,
        name,
        versions={"blue": "1.0.0", "green": "1.0.0"},
        capacity={"blue": 1, "green": 0},
        weights={"blue": 100, "green": 0},
    )
    blue = stack.target_groups["blue"]

    # A new target is "initial" until its health checks pass (stock moto: "healthy" at once).
    (instance_id, (state, _)), *_ = target_states(aws, blue).items()
    assert state == "initial"
    wait_for("the target to turn healthy", lambda: target_states(aws, blue)[instance_id][0] == "healthy")

    # A target group no listener forwards to: its targets are "unused" (Target.NotInUse).
    idle = aws.client("elbv2").create_target_group(
        Name=unique("idle"), Protocol="HTTP", Port=8080, VpcId=stack.vpc_id
    )["TargetGroups"][0]["TargetGroupArn"]
    aws.client("elbv2").register_targets(TargetGroupArn=idle, Targets=[{"Id": instance_id}])
    assert wait_for("unused", lambda: target_states(aws, idle).get(instance_id, ("", None))[0] == "unused")
    assert target_states(aws, idle)[instance_id] == ("unused", "Target.NotInUse")

    # The app crashes: it stays down and its target turns unhealthy, with the reason.
    app = next(i for i in sandbox_service.instances() if i["instance_id"] == instance_id)
    os.killpg(app["pid"], signal.SIGKILL)
    wait_for("unhealthy", lambda: target_states(aws, blue)[instance_id][0] == "unhealthy", timeout_s=30)
    assert target_states(aws, blue)[instance_id] == ("unhealthy", "Target.FailedHealthChecks")
    crashed = next(i for i in sandbox_service.instances() if i["instance_id"] == instance_id)
    assert crashed["state"] == "crashed"

    # Deregistered: "draining" for the deregistration delay (2 s), then no longer listed.
    aws.client("elbv2").deregister_targets(TargetGroupArn=blue, Targets=[{"Id": instance_id}])
    state_now = lambda: target_states(aws, blue).get(instance_id, ("gone", None))[0]  # noqa: E731
    assert wait_for("draining", lambda: state_now() == "draining", timeout_s=5)
    wait_for("the drain to end", lambda: instance_id not in target_states(aws, blue), timeout_s=15)
    asked = aws.client("elbv2").describe_target_health(TargetGroupArn=blue, Targets=[{"Id": instance_id}])
    assert asked["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "unused"
    assert asked["TargetHealthDescriptions"][0]["TargetHealth"]["Reason"] == "Target.NotRegistered"
    autoscaling = aws.client("autoscaling")
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=stack.asgs["blue"], ForceDelete=True)


def test_instances_an_asg_terminates_leave_their_target_groups(aws: Target) -> None:
    name = unique("scalein")
    stack = build_boto3_stack(  # no artifact: the instances need no app for this
        aws,
        name,
        versions={"blue": "9.9.9", "green": "9.9.9"},
        capacity={"blue": 3, "green": 1},
        weights={"blue": 50, "green": 50},
        deregistration_delay_s=1,
    )
    autoscaling = aws.client("autoscaling")
    blue, green = stack.target_groups["blue"], stack.target_groups["green"]

    def in_service(group: str) -> set[str]:
        return {i for i, (state, _) in target_states(aws, group).items() if state != "draining"}

    def members(asg: str) -> set[str]:
        described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
        return {i["InstanceId"] for i in described["AutoScalingGroups"][0]["Instances"]}

    assert len(in_service(blue)) == 3

    # Scale-in: the terminated instances leave (draining first), the survivor stays.
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asgs["blue"], DesiredCapacity=1)
    survivor = members(stack.asgs["blue"])
    assert len(survivor) == 1
    assert in_service(blue) == survivor
    wait_for("the drained targets to go", lambda: set(target_states(aws, blue)) == survivor, timeout_s=10)

    # Capacity 0: none left.
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asgs["blue"], DesiredCapacity=0)
    assert in_service(blue) == set()

    # The ASG deleted: its instances leave too.
    assert len(in_service(green)) == 1
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=stack.asgs["green"], ForceDelete=True)
    assert in_service(green) == set()


LAUNCH_TEMPLATE_TF = textwrap.dedent(
    """
    terraform {
      required_providers {
        aws = { source = "hashicorp/aws", version = ">= 5.0, < 6.0" }
      }
    }
    provider "aws" {
      region                      = "us-east-1"
      skip_credentials_validation = true
      skip_requesting_account_id  = true
      skip_metadata_api_check     = true
      default_tags {
        tags = { Project = "bluegreen-lab", ManagedBy = "terraform" }
      }
    }
    variable "name" { type = string }
    resource "aws_launch_template" "fleet" {
      name          = var.name
      image_id      = "ami-12c6146b"
      instance_type = "t3.micro"
      user_data     = base64encode("#!/bin/bash\\necho hello\\n")
      tags          = { Color = "blue" }
      tag_specifications {
        resource_type = "instance"
        tags          = { Color = "blue" }
      }
    }
    """
)


def test_a_tagged_launch_template_plans_no_changes(
    aws: Target, tmp_path: Path, labkit_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.environ.get("LABKIT_TF_PLUGIN_MIRROR") and Path("/opt/tf-plugins").is_dir():
        monkeypatch.setenv("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    (tmp_path / "main.tf").write_text(LAUNCH_TEMPLATE_TF)
    tf = Terraform(tmp_path, target=aws, data_dir=tmp_path / ".tfdata", reporter=None)
    tf.init()
    variables = {"name": unique("tagged-lt")}
    assert tf.apply(variables=variables).added == 1
    second = tf.plan(variables=variables)
    assert second.exit_code == 0, second.summary()


def test_metric_alarms_are_evaluated_and_change_state(aws: Target) -> None:
    cloudwatch = aws.client("cloudwatch")
    namespace = unique("Lab/Alarms")
    now = datetime.now(UTC)

    def alarm(name: str, **extra: object) -> str:
        full = unique(name)
        settings: dict[str, object] = {
            "Namespace": namespace,
            "MetricName": "Errors",
            "Statistic": "Sum",
            "Period": 10,
            "EvaluationPeriods": 1,
            "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
        }
        settings.update(extra)
        cloudwatch.put_metric_alarm(AlarmName=full, **settings)
        return full

    def state(name: str) -> str:
        return str(cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])

    # An update keeps the alarm's state (stock moto resets it to OK); "ignore" with no data keeps
    # it too, so nothing but the update could change it here.
    kept = alarm("kept", MetricName="Silent", TreatMissingData="ignore")
    assert state(kept) == "INSUFFICIENT_DATA"  # a new alarm, as on AWS
    cloudwatch.set_alarm_state(AlarmName=kept, StateValue="ALARM", StateReason="set by the test")
    cloudwatch.put_metric_alarm(AlarmName=kept, Namespace=namespace, MetricName="Silent", Statistic="Sum",
                                Period=10, EvaluationPeriods=1, Threshold=9.0,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData="ignore")
    assert state(kept) == "ALARM"

    missing = alarm("missing", MetricName="Silent", TreatMissingData="missing")
    breaching = alarm("breaching", MetricName="Silent", TreatMissingData="breaching")
    errors = alarm("errors")
    two_of_three = alarm("two-of-three", MetricName="Slow", Statistic="Average", Threshold=0.5,
                         EvaluationPeriods=3, DatapointsToAlarm=2)
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": "Errors", "Value": 9.0, "Timestamp": now},
        {"MetricName": "Slow", "Value": 0.9, "Timestamp": now - timedelta(seconds=2)},
        {"MetricName": "Slow", "Value": 0.8, "Timestamp": now - timedelta(seconds=12)},
        {"MetricName": "Slow", "Value": 0.1, "Timestamp": now - timedelta(seconds=22)},
    ])

    wait_for("the alarms to be evaluated", lambda: state(breaching) == "ALARM", timeout_s=12)
    assert state(missing) == "INSUFFICIENT_DATA"
    assert state(errors) == "ALARM"
    assert state(two_of_three) == "ALARM"
    described = cloudwatch.describe_alarms(AlarmNames=[errors])["MetricAlarms"][0]
    assert described["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [9 ")
    assert '"statistic": "Sum"' in described["StateReasonData"]

    # The errors stop: once the period has passed without data, "notBreaching" brings it back to OK.
    wait_for("the alarm to clear", lambda: state(errors) == "OK", timeout_s=25)
    history = cloudwatch.describe_alarm_history(AlarmName=errors, HistoryItemType="StateUpdate")
    summaries = [item["HistorySummary"] for item in history["AlarmHistoryItems"]]
    assert summaries == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
    ]


def test_metric_statistics_match_dimensions_exactly_and_answer_percentiles(aws: Target) -> None:
    cloudwatch = aws.client("cloudwatch")
    namespace = unique("Lab/Stats")
    now = datetime.now(UTC)
    lb = [{"Name": "LoadBalancer", "Value": "app/lab/1"}]
    lb_tg = [*lb, {"Name": "TargetGroup", "Value": "targetgroup/blue/2"}]
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": "RequestCount", "Value": 5, "Dimensions": lb, "Timestamp": now},
        {"MetricName": "RequestCount", "Value": 3, "Dimensions": lb_tg, "Timestamp": now},
        {"MetricName": "Latency", "Values": [0.1, 0.2, 1.0], "Counts": [50, 49, 1], "Dimensions": lb,
         "Timestamp": now},
    ])

    def stats(metric: str, dimensions: list[dict[str, str]], **kwargs: object) -> dict[str, object]:
        found = cloudwatch.get_metric_statistics(
            Namespace=namespace, MetricName=metric, Dimensions=dimensions, Period=60,
            StartTime=now - timedelta(minutes=1), EndTime=now + timedelta(minutes=1), **kwargs,
        )["Datapoints"]
        assert len(found) == 1
        return dict(found[0])

    # Only the metric with exactly these dimensions counts (stock moto adds the per-group one).
    assert stats("RequestCount", lb, Statistics=["Sum"])["Sum"] == 5
    assert stats("RequestCount", list(reversed(lb_tg)), Statistics=["Sum"])["Sum"] == 3
    latency = stats("Latency", lb, Statistics=["SampleCount", "Maximum"], ExtendedStatistics=["p50", "p99"])
    assert latency["SampleCount"] == 100
    assert latency["Maximum"] == 1.0
    assert latency["ExtendedStatistics"] == {"p50": 0.1, "p99": 0.2}


def test_an_asg_launches_from_a_later_launch_template_version(aws: Target) -> None:
    ec2, autoscaling = aws.client("ec2"), aws.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    name = unique("lt-versions")
    first = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro", "UserData": user_data("b", "blue", "1")}
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=first)
    second = {**first, "UserData": user_data("b", "blue", "2")}
    ec2.create_launch_template_version(LaunchTemplateName=name, LaunchTemplateData=second)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=1, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
    )  # stock moto: HTTP 500 (user data of a later version is not base64-typed)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    assert len(described[0]["Instances"]) == 1
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


def test_a_rule_admitting_another_security_group_keeps_its_description(aws: Target) -> None:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    alb = ec2.create_security_group(GroupName=unique("alb"), Description="alb", VpcId=vpc)["GroupId"]
    app = ec2.create_security_group(GroupName=unique("app"), Description="app", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=app, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
        "UserIdGroupPairs": [{"GroupId": alb, "Description": "App port from the load balancer"}],
    }])
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [app]}])
    ingress = [r for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    assert [r.get("Description") for r in ingress] == ["App port from the load balancer"]



def test_a_second_asg_of_the_same_name_fails_as_on_aws(aws: Target) -> None:
    ec2, autoscaling = aws.client("ec2"), aws.client("autoscaling")
    name = unique("asg-twice")
    data = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    def create() -> None:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=0,
            AvailabilityZones=[f"{aws.region}a"], LaunchTemplate={"LaunchTemplateName": name},
        )  # fmt: skip

    create()
    try:
        with pytest.raises(autoscaling.exceptions.AlreadyExistsFault) as failed:
            create()  # stock moto: replaces the group silently
        error = failed.value.response["Error"]
        assert error["Code"] == "AlreadyExists"
        assert error["Message"].startswith("You already have an Auto Scaling group or launch configuration")
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


def test_each_rds_instance_is_found_by_its_own_resource_id(aws: Target) -> None:
    """The AWS provider reads an instance back by its DbiResourceId (the ``dbi-resource-id`` filter);
    with one id shared by every instance (stock moto), a second instance in the region made the
    create of the first fail with "couldn't find resource". MySQL: no server for the sandbox to run."""
    rds = aws.client("rds")
    names = [unique("resid"), unique("resid")]
    for name in names:
        rds.create_db_instance(
            DBInstanceIdentifier=name, Engine="mysql", DBInstanceClass="db.t4g.micro", AllocatedStorage=20,
            MasterUsername="admin", MasterUserPassword="a-password-1234",
        )  # fmt: skip
    try:
        for name in names:
            (described,) = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
            resource_id = described["DbiResourceId"]
            assert re.fullmatch(r"db-[A-Z2-7]{26}", resource_id), resource_id
            found = rds.describe_db_instances(Filters=[{"Name": "dbi-resource-id", "Values": [resource_id]}])
            assert [d["DBInstanceIdentifier"] for d in found["DBInstances"]] == [name]
    finally:
        for name in names:
            rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)


def test_an_rds_managed_secret_keeps_its_schedule_and_rotates_only_when_told(aws: Target) -> None:
    """The database module's aws_secretsmanager_secret_rotation sets a schedule without rotating
    now (RotateImmediately false); the AWS provider reads the schedule back, and its destroy
    cancels rotation. Stock moto kept only a number of days and rotated at once, so the provider
    planned the schedule again on every apply, and refused the cancel of a rotation without a
    Lambda, which failed that update and the destroy. MySQL: no server for the sandbox to run."""
    rds, manager = aws.client("rds"), aws.client("secretsmanager")
    name = unique("rotate")
    rds.create_db_instance(
        DBInstanceIdentifier=name, Engine="mysql", DBInstanceClass="db.t4g.micro", AllocatedStorage=20,
        MasterUsername="admin", ManageMasterUserPassword=True,
    )  # fmt: skip
    try:
        (described,) = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
        arn = described["MasterUserSecret"]["SecretArn"]
        first = manager.get_secret_value(SecretId=arn)["SecretString"]
        rules = {"ScheduleExpression": "rate(7 days)"}

        manager.rotate_secret(SecretId=arn, RotationRules=rules, RotateImmediately=False)
        secret = manager.describe_secret(SecretId=arn)
        assert (secret["RotationEnabled"], secret["RotationRules"]) == (True, rules)
        assert manager.get_secret_value(SecretId=arn)["SecretString"] == first  # not rotated yet

        manager.rotate_secret(SecretId=arn)  # now, on the schedule it has
        assert manager.describe_secret(SecretId=arn)["RotationRules"] == rules
        assert manager.get_secret_value(SecretId=arn)["SecretString"] != first

        manager.cancel_rotate_secret(SecretId=arn)  # as the destroy of the schedule does
        assert manager.describe_secret(SecretId=arn)["RotationEnabled"] is False
    finally:
        rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
