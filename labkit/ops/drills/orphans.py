"""Drill ``orphans``: resources made by hand next to an environment, as during an incident or a
test ("just a debug box"), that no Terraform state holds: an instance in the environment's subnet,
with its tags; a security group in its VPC, untagged; an Elastic IP with its tags, attached to
nothing; a target group in its VPC, with its tags. ``adopt-or-remove-orphans`` finds them
(``labkit inventory orphans``), then removes them (the drill's default) or adopts them into the
code (``-p decision adopt``)."""

from __future__ import annotations

import secrets
from typing import Any

from labkit.errors import DrillError
from labkit.infra.inventory import find_orphans
from labkit.infra.stack import Stack
from labkit.infra.tfjson import raw_state_resources
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target


def inject(target: Target, environment: str) -> dict[str, Any]:
    """Create the four resources through the EC2 and ELBv2 APIs; their ids."""
    stack = Stack(environment, target, reporter=None)
    resources = raw_state_resources(stack.state())
    first = {r.type: r.values for r in reversed(resources)}  # the first of each type
    if not {"aws_vpc", "aws_subnet", "aws_launch_template"} <= set(first):
        raise DrillError(
            f"{environment} has no VPC, subnet or launch template in its state to put orphans next to.",
            hint=f"Build it first: `labkit stack apply {environment}`.",
        )
    vpc, subnet, image = (
        first["aws_vpc"]["id"],
        first["aws_subnet"]["id"],
        first["aws_launch_template"]["image_id"],
    )
    name = f"{stack.names.project}-{environment}-byhand-{secrets.token_hex(3)}"
    tags = [{"Key": "Project", "Value": stack.names.project}, {"Key": "Environment", "Value": environment}]
    ec2 = target.client("ec2")
    group = ec2.create_security_group(GroupName=name, Description="made by hand", VpcId=vpc)["GroupId"]
    instance = ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [*tags, {"Key": "Name", "Value": name}]}],
    )["Instances"][0]["InstanceId"]
    address = ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}]
    )["AllocationId"]
    target_group = target.client("elbv2").create_target_group(
        Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, Tags=tags
    )["TargetGroups"][0]["TargetGroupArn"]
    return {
        "vpc": vpc,
        "instance": instance,
        "security-group": group,
        "elastic-ip": address,
        "targetgroup": target_group,
    }


def no_orphans(target: Target, environment: str) -> Check:
    """No resource in the environment's VPC or tagged with it is missing from every state."""
    report = find_orphans(target, environment)
    return not report.orphans, "; ".join(report.lines())


DRILL = Drill(
    name="orphans",
    summary="an instance, a security group, an Elastic IP and a target group made by hand",
    inject=inject,
    runbook="adopt-or-remove-orphans",
    checks={"no-orphans": no_orphans},
    runbook_parameters=lambda facts: {"decision": "remove"},
)
