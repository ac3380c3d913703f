"""Service quotas in the sandbox, through boto3 (no Terraform): each quota refuses with AWS's own
error code and message once its value is reached, an Auto Scaling launch past the vCPU quota
records a failed activity and launches once Service Quotas grants the increase, and the Service
Quotas API reports applied and default values as `labkit doctor` and quota-check read them.

Each test lowers a quota of the session's sandbox to what is in use and puts it back after.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError

from labkit import sandbox as sandbox_service
from labkit.infra import quotas
from labkit.infra.quotas import ALBS, ELASTIC_IPS, SPOT_VCPUS, TARGET_GROUPS, VCPUS, VPCS, Quota
from labkit.lab.doctor import check_quotas
from labkit.target import Target
from tests.conftest import RunningSandbox, wait_for

pytestmark = pytest.mark.integration

VCPU_MESSAGE = (
    "You have requested more vCPU capacity than your current vCPU limit of {} allows for the instance "
    "bucket that the specified instance type belongs to. Please visit "
    "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
)
SPOT_MESSAGE = "Max spot instance count exceeded"
IMAGE = "ami-12c6146b"


@contextmanager
def no_headroom(target: Target, quota: Quota) -> Iterator[float]:
    """The quota lowered to its usage for the block (the usage is yielded), then put back."""
    used = quotas.current_usage(target)[quota.code]
    before = sandbox_service.set_quota(target, quota.code, used)
    try:
        yield used
    finally:
        sandbox_service.set_quota(target, quota.code, before)


def default_subnets(target: Target) -> list[str]:
    ec2 = target.client("ec2")
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default]}])["Subnets"]
    return [s["SubnetId"] for s in subnets][:2]


def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


CREATES: dict[str, tuple[Quota, Callable[[Target], Any], str, str]] = {
    "vcpus": (
        VCPUS,
        lambda t: t.client("ec2").run_instances(
            ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro"
        ),
        "VcpuLimitExceeded",
        VCPU_MESSAGE,
    ),
    "spot-vcpus": (
        SPOT_VCPUS,
        lambda t: t.client("ec2").run_instances(
            ImageId=IMAGE,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            InstanceMarketOptions={"MarketType": "spot"},
        ),
        "MaxSpotInstanceCountExceeded",
        SPOT_MESSAGE,
    ),
    "elastic-ips": (
        ELASTIC_IPS,
        lambda t: t.client("ec2").allocate_address(Domain="vpc"),
        "AddressLimitExceeded",
        "The maximum number of addresses has been reached.",
    ),
    "vpcs": (
        VPCS,
        lambda t: t.client("ec2").create_vpc(CidrBlock="10.99.0.0/16"),
        "VpcLimitExceeded",
        "The maximum number of VPCs has been reached.",
    ),
    "albs": (
        ALBS,
        lambda t: t.client("elbv2").create_load_balancer(Name=name(), Subnets=default_subnets(t)),
        "TooManyLoadBalancers",
        "You've reached the limit on the number of load balancers for your AWS account.",
    ),
    "target-groups": (
        TARGET_GROUPS,
        lambda t: t.client("elbv2").create_target_group(
            Name=name(), Protocol="HTTP", Port=80, VpcId=t.client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
        ),
        "TooManyTargetGroups",
        "You've reached the limit on the number of target groups for your AWS account.",
    ),
}


@pytest.mark.parametrize("kind", list(CREATES))
def test_a_create_past_its_quota_fails_with_awss_error(sandbox: RunningSandbox, kind: str) -> None:
    quota, create, code, message = CREATES[kind]
    with no_headroom(sandbox.target, quota) as used:
        with pytest.raises(ClientError) as refused:
            create(sandbox.target)
        error = refused.value.response["Error"]
        assert (error["Code"], error["Message"]) == (code, message.format(f"{used:g}"))
        assert quotas.current_usage(sandbox.target)[quota.code] == used  # nothing was created


@pytest.mark.parametrize("market", ["on-demand", "spot"])
def test_an_auto_scaling_launch_past_the_vcpu_quota_fails_then_launches_once_granted(
    sandbox: RunningSandbox, market: str
) -> None:
    """On demand or on spot (the launch template's market, as staging's fleets ask for spot): the
    launch counts toward that market's quota only, and a spot group's instances are spot ones."""
    target = sandbox.target
    ec2, autoscaling = target.client("ec2"), target.client("autoscaling")
    group, template = name(), name()
    spot = market == "spot"
    quota = SPOT_VCPUS if spot else VCPUS
    data: dict[str, Any] = {"ImageId": IMAGE, "InstanceType": "t3.micro"}
    if spot:
        data["InstanceMarketOptions"] = {"MarketType": "spot"}
    ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData=data)
    with no_headroom(target, quota) as used:
        other = quotas.current_usage(target)[(VCPUS if spot else SPOT_VCPUS).code]
        try:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=group, MinSize=0, MaxSize=2, DesiredCapacity=1,
                LaunchTemplate={"LaunchTemplateName": template}, VPCZoneIdentifier=default_subnets(target)[0],
            )  # fmt: skip
            (failed, *_) = autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"]
            refusal = SPOT_MESSAGE + "." if spot else VCPU_MESSAGE.format(f"{used:g}")
            reason = refusal + " Launching EC2 instance failed."
            assert failed["StatusCode"] == "Failed" and failed["StatusMessage"] == reason
            assert failed["Description"] == f"Launching a new EC2 instance.  Status Reason: {reason}"
            assert "increasing the capacity from 0 to 1" in failed["Cause"]
            assert not instances_of(target, group)

            granted = target.client("service-quotas").request_service_quota_increase(
                ServiceCode="ec2", QuotaCode=quota.code, DesiredValue=used + 2
            )["RequestedQuota"]
            assert granted["Status"] == "APPROVED"
            wait_for(
                "Auto Scaling's next launch", lambda: len(instances_of(target, group)) == 1, timeout_s=20
            )
            (launched,) = ec2.describe_instances(InstanceIds=instances_of(target, group))["Reservations"]
            assert launched["Instances"][0].get("InstanceLifecycle") == ("spot" if spot else None)
            counted = quotas.current_usage(target)
            assert counted[quota.code] == used + 2  # a t3.micro's 2 vCPUs, on its own market's quota
            assert counted[(VCPUS if spot else SPOT_VCPUS).code] == other
        finally:
            autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
            ec2.delete_launch_template(LaunchTemplateName=template)


def instances_of(target: Target, group: str) -> list[str]:
    found = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return [
        i["InstanceId"]
        for i in found["AutoScalingGroups"][0]["Instances"]
        if i["LifecycleState"] == "InService"
    ]


def test_service_quotas_reports_applied_and_default_values_as_doctor_reads_them(
    sandbox: RunningSandbox,
) -> None:
    target = sandbox.target
    client = target.client("service-quotas")
    before = sandbox_service.set_quota(target, VCPUS.code, 7)
    try:
        applied = client.get_service_quota(ServiceCode="ec2", QuotaCode=VCPUS.code)["Quota"]
        default = client.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=VCPUS.code)["Quota"]
        assert (applied["Value"], default["Value"]) == (7.0, 5.0)
        assert applied["QuotaName"] == "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
        listed = client.list_service_quotas(ServiceCode="elasticloadbalancing")["Quotas"]
        assert {q["QuotaCode"] for q in listed} == {ALBS.code, TARGET_GROUPS.code}

        lines = {check.name: check for check in check_quotas(target)}
        assert list(lines) == [f"quota {q.code}" for q in quotas.QUOTAS]
        used = quotas.current_usage(target)[VCPUS.code]
        vcpu = lines[f"quota {VCPUS.code}"]
        assert f"{used:g} of 7 vCPUs used" in vcpu.detail and "(AWS default 5)" in vcpu.detail
        assert vcpu.ok is (used < 7)
    finally:
        sandbox_service.set_quota(target, VCPUS.code, before)
