"""Finding what an environment still has by its tags (moto's in-process mock; no network)."""

from __future__ import annotations

import pytest

from labkit.infra.inventory import leftovers
from labkit.target import Target

TAGS = [{"Key": "Project", "Value": "bglab"}, {"Key": "Environment", "Value": "staging"}]


@pytest.fixture()
def target(moto_target: Target) -> Target:
    return moto_target


def _build(target: Target) -> str:
    ec2 = target.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": TAGS}])
    prod = [*TAGS[:1], {"Key": "Environment", "Value": "prod"}]  # another environment's VPC
    ec2.create_vpc(CidrBlock="10.30.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": prod}])
    subnet = ec2.create_subnet(VpcId=vpc["Vpc"]["VpcId"], CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": TAGS}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    target.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="bglab-staging-blue",
        MinSize=0, MaxSize=1, DesiredCapacity=0, VPCZoneIdentifier=subnet,
        LaunchConfigurationName=_launch_configuration(target),
        Tags=[{**tag, "PropagateAtLaunch": True} for tag in TAGS],
    )  # fmt: skip
    return str(instance)


def _launch_configuration(target: Target) -> str:
    target.client("autoscaling").create_launch_configuration(
        LaunchConfigurationName="lc", ImageId="ami-12c6146b", InstanceType="t3.micro"
    )
    return "lc"


def test_everything_tagged_for_the_environment_is_listed(target: Target) -> None:
    instance = _build(target)
    found = leftovers(target, project="bglab", environment="staging")
    kinds = set(zip(found["service"], found["kind"], strict=True))
    assert {("ec2", "vpc"), ("ec2", "instance"), ("autoscaling", "group")} <= kinds
    assert instance in set(found["id"])
    assert len(found[found["kind"] == "vpc"]) == 1, "the prod VPC must not be listed"


def test_terminated_instances_do_not_count(target: Target) -> None:
    instance = _build(target)
    target.client("ec2").terminate_instances(InstanceIds=[instance])
    found = leftovers(target, project="bglab", environment="staging")
    assert instance not in set(found["id"])


def test_an_environment_with_nothing_left_is_empty(target: Target) -> None:
    _build(target)
    assert leftovers(target, project="bglab", environment="qa").empty


def test_a_kms_key_scheduled_for_deletion_is_gone(target: Target) -> None:
    kms = target.client("kms")
    tags = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in TAGS]
    kept, destroyed = (kms.create_key(Tags=tags)["KeyMetadata"]["KeyId"] for _ in range(2))
    kms.schedule_key_deletion(KeyId=destroyed, PendingWindowInDays=7)  # what terraform destroy does
    keys = set(leftovers(target, project="bglab", environment="staging")["id"])
    assert kept in keys and destroyed not in keys
