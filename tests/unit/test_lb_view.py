"""What the data plane is told to serve, read from moto's ELBv2 models: the load balancer attributes."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws

from labkit.sandbox.server.lb.view import read_topology


def alb_with_attributes(attributes: list[dict[str, str]]) -> str:
    """An application load balancer with one HTTP listener and these attributes; its ARN."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    elb: Any = boto3.client("elbv2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in ((1, "a"), (2, "b"))
    ]
    arn = elb.create_load_balancer(Name="view", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    group = elb.create_target_group(Name="tg", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    elb.create_listener(
        LoadBalancerArn=arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    if attributes:
        elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=attributes)
    return str(arn)


@mock_aws
def test_listeners_carry_the_load_balancers_defaults() -> None:
    """AWS defaults: desync mitigation mode defensive, invalid header fields routed, idle timeout 60 s."""
    alb_with_attributes([])
    (listener,) = read_topology({}).listeners
    assert (listener.desync_mitigation_mode, listener.drop_invalid_header_fields) == ("defensive", False)
    assert listener.idle_timeout_s == 60


@mock_aws
def test_listeners_follow_the_load_balancers_attributes() -> None:
    """routing.http.desync_mitigation_mode, routing.http.drop_invalid_header_fields.enabled and
    idle_timeout.timeout_seconds, as set with ModifyLoadBalancerAttributes, reach the data plane."""
    alb_with_attributes(
        [
            {"Key": "routing.http.desync_mitigation_mode", "Value": "strictest"},
            {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"},
            {"Key": "idle_timeout.timeout_seconds", "Value": "30"},
        ]
    )
    (listener,) = read_topology({}).listeners
    assert (listener.desync_mitigation_mode, listener.drop_invalid_header_fields) == ("strictest", True)
    assert listener.idle_timeout_s == 30
