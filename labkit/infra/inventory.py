"""What an environment still has in the account, found by its tags rather than by Terraform's state.

Terraform tags everything it creates with ``Project`` and ``Environment`` (the roots' default tags,
and the ASGs' propagated tags), so asking the account for those tags finds what state would miss:
the check after a teardown, and the start of an orphaned-resource hunt.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

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
