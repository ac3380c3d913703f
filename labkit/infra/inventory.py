"""What an environment still has in the account, found by its tags rather than by Terraform's state.

Terraform tags everything it creates with ``Project`` and ``Environment`` (the roots' default tags,
and the ASGs' propagated tags), so asking the account for those tags finds what state would miss:
the check after a teardown (:func:`leftovers`), and the orphan hunt (:func:`find_orphans`), which
also looks in the environment's VPC and compares what it found with every environment's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from labkit.infra.stack import PROJECT, Stack, app_environments
from labkit.infra.tfjson import raw_state_resources
from labkit.target import Target

COLUMNS = ["service", "kind", "id"]
#: Instances in these states no longer run or cost anything; AWS lists them for up to an hour.
_GONE_INSTANCE_STATES = ("shutting-down", "terminated")


def _tag_filters(project: str, environment: str) -> list[dict[str, Any]]:
    return [
        {"Name": "tag:Project", "Values": [project]},
        {"Name": "tag:Environment", "Values": [environment]},
    ]


def _tagged_arns(target: Target, project: str, environment: str) -> list[str]:
    """ARNs the Resource Groups Tagging API lists with both tags (not ASGs, not instances)."""
    paginator = target.client("resourcegroupstaggingapi").get_paginator("get_resources")
    arns: list[str] = []
    for page in paginator.paginate(
        TagFilters=[{"Key": "Project", "Values": [project]}, {"Key": "Environment", "Values": [environment]}]
    ):
        arns += [m["ResourceARN"] for m in page.get("ResourceTagMappingList", [])]
    # Instances are judged by their state below: a terminated one keeps its tags for a while.
    return [arn for arn in arns if ":instance/" not in arn and not _kms_key_deleted(target, arn)]


def _kms_key_deleted(target: Target, arn: str) -> bool:
    """True for a KMS key that Terraform destroyed: AWS only schedules a key's deletion (a 7 to 30
    day window in which it cannot be used), so it stays listed, tags and all, until then."""
    if ":kms:" not in arn or ":key/" not in arn:
        return False
    state = target.client("kms").describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
    return state in ("PendingDeletion", "PendingReplicaDeletion")


def _kind(arn: str) -> tuple[str, str, str]:
    """(service, kind, id) of an ARN such as arn:aws:ec2:us-east-1:123:vpc/vpc-1."""
    parts = arn.split(":", 5)
    service, resource = parts[2], parts[5] if len(parts) > 5 else arn
    kind, _, ident = resource.partition("/")
    if not ident:
        kind, _, ident = resource.partition(":")
    return service, kind or service, ident or resource


def leftovers(target: Target, *, project: str, environment: str) -> pd.DataFrame:
    """Every resource of ``environment`` still in the account: one row per resource (service, kind,
    id); empty when the environment is gone. Running or stopped instances and ASGs count; terminated
    instances do not."""
    rows = [_kind(arn) for arn in _tagged_arns(target, project, environment)]
    ec2 = target.client("ec2")
    for page in ec2.get_paginator("describe_instances").paginate(Filters=_tag_filters(project, environment)):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("State", {}).get("Name") not in _GONE_INSTANCE_STATES:
                    rows.append(("ec2", "instance", instance["InstanceId"]))
    autoscaling = target.client("autoscaling")
    groups = autoscaling.get_paginator("describe_auto_scaling_groups")
    for page in groups.paginate(Filters=_tag_filters(project, environment)):
        rows += [("autoscaling", "group", g["AutoScalingGroupName"]) for g in page["AutoScalingGroups"]]
    return pd.DataFrame(sorted(set(rows)), columns=COLUMNS)


# -- orphans: what the environment has that no state holds ------------------------------------

#: The tag EC2 Auto Scaling puts on every instance it launches.
ASG_TAG = "aws:autoscaling:groupName"


@dataclass(frozen=True)
class Found:
    """A resource seen in the account, and how it was seen (``in VPC vpc-1``, ``tagged
    Environment=staging``). ``id`` is what Terraform's state records as the resource's id: the
    EC2 id (``i-...``, ``sg-...``, ``eipalloc-...``), else the ARN (target groups, buckets, ...).
    ``launched_by``: the Auto Scaling group that launched an instance, which owns it."""

    service: str
    kind: str
    id: str
    arn: str = ""
    name: str = ""
    how: tuple[str, ...] = ()
    launched_by: str = ""

    def line(self) -> str:
        label = f" ({self.name})" if self.name and self.name != self.id else ""
        return f"{self.kind} {self.id}{label}: {'; '.join(self.how)}"


@dataclass(frozen=True)
class OrphanReport:
    """The orphans of one environment, and what was compared to find them."""

    environment: str
    vpcs: tuple[str, ...]
    orphans: tuple[Found, ...]
    #: How many resource ids and ARNs the states hold, by environment.
    held: Mapping[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (``labkit inventory orphans --json``)."""
        return {
            "environment": self.environment,
            "vpcs": list(self.vpcs),
            "held": dict(self.held),
            "orphans": [
                {
                    "service": o.service,
                    "kind": o.kind,
                    "id": o.id,
                    "name": o.name,
                    "arn": o.arn,
                    "how": list(o.how),
                }
                for o in self.orphans
            ],
        }

    def lines(self) -> list[str]:
        if not self.orphans:
            where = f"in {', '.join(self.vpcs)} or tagged with it" if self.vpcs else "its state holds no VPC"
            return [f"{self.environment}: no orphans ({where})"]
        head = f"{self.environment}: {len(self.orphans)} resource(s) that no Terraform state holds:"
        return [head, *(f"  {orphan.line()}" for orphan in self.orphans)]


def held_ids(states: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Every id and ARN the states hold (raw states by environment) -> the environment holding it."""
    held: dict[str, str] = {}
    for env, state in states.items():
        for resource in raw_state_resources(state):
            for key in ("id", "arn"):
                if value := resource.values.get(key):
                    held.setdefault(str(value), env)
    return held


def orphans_among(found: Iterable[Found], held: Mapping[str, str]) -> list[Found]:
    """What no state holds among ``found``: one row per resource (the ways it was found merged),
    none for an instance that a held Auto Scaling group launched (the group owns it) nor for a
    VPC's default security group (it comes with the VPC), sorted by kind and id."""
    merged: dict[tuple[str, str], Found] = {}
    for item in found:
        key = (item.kind, item.id)
        if (seen := merged.get(key)) is not None:
            how = tuple(sorted({*seen.how, *item.how}))  # 'in VPC ...' before 'tagged ...'
            item = replace(seen, how=how, name=seen.name or item.name, arn=seen.arn or item.arn)
        merged[key] = item
    return sorted(
        (
            item
            for item in merged.values()
            if item.id not in held
            and not (item.arn and item.arn in held)
            and not (item.launched_by and item.launched_by in held)
            and not (item.kind == "security-group" and item.name == "default")
        ),
        key=lambda item: (item.kind, item.id),
    )


def environment_vpcs(state: Mapping[str, Any]) -> list[str]:
    """The VPCs an environment's state holds."""
    return sorted(str(r.values["id"]) for r in raw_state_resources(state) if r.type == "aws_vpc")


def find_orphans(target: Target, environment: str) -> OrphanReport:
    """Resources in ``environment``'s VPC or tagged with it that no environment's state holds."""
    envs = dict.fromkeys(("global", *app_environments(target), environment))
    states = {env: Stack(env, target, reporter=None).state() for env in envs}
    held = held_ids(states)
    vpcs = environment_vpcs(states[environment])
    found = scan(target, project=PROJECT, environment=environment, vpcs=vpcs)
    counts = {env: len(held_ids({env: state})) for env, state in states.items()}
    return OrphanReport(environment, tuple(vpcs), tuple(orphans_among(found, held)), counts)


def scan(target: Target, *, project: str, environment: str, vpcs: Iterable[str]) -> list[Found]:
    """Everything in ``vpcs`` (instances, security groups, Elastic IPs on their interfaces, target
    groups) and everything tagged ``Project=project`` and ``Environment=environment``, each with how
    it was found; held or not."""
    vpcs = list(vpcs)
    tagged = f"tagged Environment={environment}"
    found = [replace(_from_arn(arn), how=(tagged,)) for arn in _tagged_arns(target, project, environment)]
    found += _instances(target, project, environment, vpcs)
    found += _security_groups(target, project, environment, vpcs)
    found += _elastic_ips(target, project, environment, vpcs)
    found += _target_groups(target, project, environment, vpcs)
    groups = target.client("autoscaling").get_paginator("describe_auto_scaling_groups")
    for page in groups.paginate(Filters=_tag_filters(project, environment)):
        found += [
            Found("autoscaling", "group", g["AutoScalingGroupName"], g.get("AutoScalingGroupARN", ""),
                  how=(tagged,))
            for g in page["AutoScalingGroups"]
        ]  # fmt: skip
    return found


def _from_arn(arn: str) -> Found:
    service, kind, ident = _kind(arn)
    return Found(service, kind, ident if service == "ec2" else arn, arn)


def _tags(described: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in described}


def _how(
    vpc: str | None, vpcs: list[str], tags: Mapping[str, str], project: str, env: str
) -> tuple[str, ...]:
    how = [f"in VPC {vpc}"] if vpc in vpcs else []
    if tags.get("Project") == project and tags.get("Environment") == env:
        how.append(f"tagged Environment={env}")
    return tuple(how)


def _instances(target: Target, project: str, env: str, vpcs: list[str]) -> list[Found]:
    ec2 = target.client("ec2")
    filters = [_tag_filters(project, env)] + ([[{"Name": "vpc-id", "Values": vpcs}]] if vpcs else [])
    found = []
    for query in filters:
        for page in ec2.get_paginator("describe_instances").paginate(Filters=query):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    if instance.get("State", {}).get("Name") in _GONE_INSTANCE_STATES:
                        continue
                    tags = _tags(instance.get("Tags", []))
                    how = _how(instance.get("VpcId"), vpcs, tags, project, env)
                    ident = instance["InstanceId"]
                    found.append(
                        Found("ec2", "instance", ident, name=tags.get("Name", ""), how=how,
                              launched_by=tags.get(ASG_TAG, ""))
                    )  # fmt: skip
    return found


def _security_groups(target: Target, project: str, env: str, vpcs: list[str]) -> list[Found]:
    ec2 = target.client("ec2")
    filters = [_tag_filters(project, env)] + ([[{"Name": "vpc-id", "Values": vpcs}]] if vpcs else [])
    found = []
    for query in filters:
        for page in ec2.get_paginator("describe_security_groups").paginate(Filters=query):
            for group in page["SecurityGroups"]:
                how = _how(group.get("VpcId"), vpcs, _tags(group.get("Tags", [])), project, env)
                found.append(
                    Found("ec2", "security-group", group["GroupId"], name=group["GroupName"], how=how)
                )
    return found


def _elastic_ips(target: Target, project: str, env: str, vpcs: list[str]) -> list[Found]:
    """Elastic IPs tagged with the environment, or on a network interface in its VPC."""
    ec2 = target.client("ec2")
    interfaces: dict[str, str] = {}
    if vpcs:
        listed = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": vpcs}])
        interfaces = {n["NetworkInterfaceId"]: n["VpcId"] for n in listed["NetworkInterfaces"]}
    found = []
    for address in ec2.describe_addresses()["Addresses"]:
        if "AllocationId" not in address:  # an EC2-Classic address: no VPC, no id Terraform imports
            continue
        tags = _tags(address.get("Tags", []))
        how = _how(interfaces.get(str(address.get("NetworkInterfaceId") or "")), vpcs, tags, project, env)
        if how:
            found.append(Found("ec2", "elastic-ip", address["AllocationId"], name=address.get("PublicIp", ""),
                               how=how))  # fmt: skip
    return found


def _target_groups(target: Target, project: str, env: str, vpcs: list[str]) -> list[Found]:
    """Target groups in the VPC, or tagged with the environment (read with DescribeTags, as the
    Resource Groups Tagging API may not list a target group yet)."""
    elbv2 = target.client("elbv2")
    groups = [
        g for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]
    ]
    tags: dict[str, dict[str, str]] = {}
    arns = [str(g["TargetGroupArn"]) for g in groups]
    for start in range(0, len(arns), 20):  # DescribeTags takes at most 20 ARNs
        for described in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            tags[described["ResourceArn"]] = _tags(described.get("Tags", []))
    found = []
    for group in groups:
        arn = str(group["TargetGroupArn"])
        if how := _how(group.get("VpcId"), vpcs, tags.get(arn, {}), project, env):
            found.append(
                Found("elasticloadbalancing", "targetgroup", arn, arn, group["TargetGroupName"], how)
            )
    return found
