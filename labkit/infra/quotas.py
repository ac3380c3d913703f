"""The service quotas the lab's stacks run into, their usage, and the arithmetic both sides share.

:data:`QUOTAS` lists each quota as the Service Quotas API names it (service code, quota code, name)
with AWS's default value, from AWS's own pages:

- EC2 On-Demand standard vCPUs (``ec2``/``L-1216C47A``, default 5): the AWS CLI's
  ``get-aws-default-service-quota`` example (docs.aws.amazon.com/cli/latest/userguide/
  cli_service-quotas_code_examples.html);
- EC2 standard Spot vCPUs (``ec2``/``L-34B43A08``, default 5): "Spot Instance quotas"
  (docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html); a fleet on spot capacity
  (staging's) counts here and not toward the On-Demand quota (:func:`vcpu_quota`);
- Elastic IPs and VPCs per Region (``L-0263D0A3``, ``L-F678F1CE``, default 5 each): "Amazon VPC
  quotas" (docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html);
- Application Load Balancers (``L-53DA6B97``, 50) and target groups (``L-B22855CB``, 3,000) per
  Region: "Quotas for your Application Load Balancers" (docs.aws.amazon.com/elasticloadbalancing/
  latest/application/load-balancer-limits.html).

The sandbox enforces them (:mod:`labkit.sandbox.server.quotas`) and ``quota-check`` and
``labkit doctor`` report them (:func:`usage`) with the same arithmetic: what counts toward each
(:func:`is_standard_type`, :data:`COUNTED_STATES`) and what is left (:func:`headroom`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from labkit.target import Target


@dataclass(frozen=True)
class Quota:
    """One quota as the Service Quotas API names it, with AWS's default value."""

    service_code: str
    code: str
    name: str
    service_name: str
    aws_default: float
    #: What one unit of usage is, for people ("vCPUs", "VPCs", ...).
    counts: str


VCPUS = Quota(
    "ec2", "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    "Amazon Elastic Compute Cloud (Amazon EC2)", 5.0, "vCPUs",
)  # fmt: skip
SPOT_VCPUS = Quota(
    "ec2", "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
    "Amazon Elastic Compute Cloud (Amazon EC2)", 5.0, "vCPUs",
)  # fmt: skip
ELASTIC_IPS = Quota(
    "ec2", "L-0263D0A3", "EC2-VPC Elastic IPs", "Amazon Elastic Compute Cloud (Amazon EC2)", 5.0, "addresses"
)
VPCS = Quota("vpc", "L-F678F1CE", "VPCs per Region", "Amazon Virtual Private Cloud (Amazon VPC)", 5.0, "VPCs")
ALBS = Quota(
    "elasticloadbalancing", "L-53DA6B97", "Application Load Balancers per Region",
    "Elastic Load Balancing (ELB)", 50.0, "load balancers",
)  # fmt: skip
TARGET_GROUPS = Quota(
    "elasticloadbalancing", "L-B22855CB", "Target Groups per Region",
    "Elastic Load Balancing (ELB)", 3000.0, "target groups",
)  # fmt: skip
QUOTAS: tuple[Quota, ...] = (VCPUS, SPOT_VCPUS, ELASTIC_IPS, VPCS, ALBS, TARGET_GROUPS)
#: The quotas a fleet's launches count toward, one per market (:func:`vcpu_quota`).
VCPU_QUOTAS: tuple[Quota, ...] = (VCPUS, SPOT_VCPUS)

#: Instance states whose vCPUs count toward the On-Demand quota (AWS counts running instances;
#: a pending one is about to run, so a launch already holds its vCPUs).
COUNTED_STATES = frozenset({"pending", "running"})

#: Families whose first letter is in the standard bucket's A, C, D, H, I, M, R, T, Z but which
#: have quotas of their own (DL, HPC, Inf, Trn, and Mac on dedicated hosts).
_OTHER_BUCKETS = ("dl", "hpc", "inf", "trn", "mac")
_FAMILY = re.compile(r"^([a-z]+)")

COLUMNS = ["quota", "code", "service", "value", "aws_default", "usage", "headroom", "counts"]


def find(code: str) -> Quota:
    """The quota of ``code`` (KeyError for one the lab does not track)."""
    for quota in QUOTAS:
        if quota.code == code:
            return quota
    raise KeyError(code)


def is_standard_type(instance_type: str) -> bool:
    """Whether ``instance_type`` (``t3.micro``) is in the On-Demand standard bucket (L-1216C47A)."""
    match = _FAMILY.match(instance_type.lower())
    if match is None:
        return False
    family = match.group(1)
    return family[0] in "acdhimrtz" and not family.startswith(_OTHER_BUCKETS)


def vcpu_quota(market: str) -> Quota:
    """The standard vCPU quota that instances of ``market`` ("spot" or "on-demand") count toward."""
    return SPOT_VCPUS if market == "spot" else VCPUS


def market_of(template_data: Mapping[str, Any]) -> str:
    """The market a launch template's data (``LaunchTemplateData``) launches on: "spot" when its
    ``InstanceMarketOptions`` ask for it, else "on-demand"."""
    options = template_data.get("InstanceMarketOptions") or {}
    return "spot" if options.get("MarketType") == "spot" else "on-demand"


def standard_vcpus(
    instances: Iterable[tuple[str, str, str | None]], vcpus: Mapping[str, int], *, spot: bool = False
) -> int:
    """vCPUs a standard quota counts among ``instances`` given as (type, state, lifecycle): pending
    or running, of a standard family, and Spot for the Spot quota (``spot``), else not Spot;
    ``vcpus`` maps each type to its vCPUs."""
    return sum(
        vcpus[kind]
        for kind, state, lifecycle in instances
        if state in COUNTED_STATES and (lifecycle == "spot") == spot and is_standard_type(kind)
    )


def headroom(value: float, usage: float) -> float:
    """What is left of a quota of ``value`` with ``usage`` counted (never below 0)."""
    return max(0.0, value - usage)


def exceeds(value: float, usage: float, requested: float) -> bool:
    """Whether ``requested`` more on top of ``usage`` goes past a quota of ``value``."""
    return usage + requested > value


# -- reading an account ---------------------------------------------------------------------------


def usage(target: Target) -> pd.DataFrame:
    """Each quota of :data:`QUOTAS` in the target's region: its value (GetServiceQuota, the applied
    value; AWS's default where none was ever applied), AWS's default, usage counted from the
    account, and headroom. Reads only."""
    quotas = target.client("service-quotas")
    counted = current_usage(target)
    rows = []
    for quota in QUOTAS:
        value = applied_value(quotas, quota)
        rows.append({
            "quota": quota.name, "code": quota.code, "service": quota.service_code, "value": value,
            "aws_default": quota.aws_default, "usage": counted[quota.code],
            "headroom": headroom(value, counted[quota.code]), "counts": quota.counts,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def applied_value(client: Any, quota: Quota) -> float:
    """The quota's value for the account: GetServiceQuota's, or AWS's default when the account
    never had one applied (GetServiceQuota then answers NoSuchResourceException)."""
    try:
        return float(
            client.get_service_quota(ServiceCode=quota.service_code, QuotaCode=quota.code)["Quota"]["Value"]
        )
    except client.exceptions.NoSuchResourceException:
        found = client.get_aws_default_service_quota(ServiceCode=quota.service_code, QuotaCode=quota.code)
        return float(found["Quota"]["Value"])


def current_usage(target: Target) -> dict[str, float]:
    """What counts toward each quota now, by quota code, read through the EC2 and ELBv2 APIs."""
    ec2 = target.client("ec2")
    elbv2 = target.client("elbv2")
    instances: list[tuple[str, str, str | None]] = [
        (i["InstanceType"], i["State"]["Name"], i.get("InstanceLifecycle"))
        for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": sorted(COUNTED_STATES)}]
        )
        for reservation in page["Reservations"]
        for i in reservation["Instances"]
    ]
    kinds = sorted({kind for kind, _, _ in instances})
    vcpus = {
        t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
        for t in (ec2.describe_instance_types(InstanceTypes=kinds)["InstanceTypes"] if kinds else [])
    }
    balancers = [
        lb
        for page in elbv2.get_paginator("describe_load_balancers").paginate()
        for lb in page["LoadBalancers"]
    ]
    groups = sum(len(p["TargetGroups"]) for p in elbv2.get_paginator("describe_target_groups").paginate())
    return {
        VCPUS.code: float(standard_vcpus(instances, vcpus)),
        SPOT_VCPUS.code: float(standard_vcpus(instances, vcpus, spot=True)),
        ELASTIC_IPS.code: float(len(ec2.describe_addresses()["Addresses"])),
        VPCS.code: float(sum(len(p["Vpcs"]) for p in ec2.get_paginator("describe_vpcs").paginate())),
        ALBS.code: float(sum(lb.get("Type") == "application" for lb in balancers)),
        TARGET_GROUPS.code: float(groups),
    }
