"""The ``quota-check`` runbook's logic: usage against each service quota, the fleets a quota holds
back, and the Service Quotas request that lets them launch.

A fleet is *held back* when its Auto Scaling group runs fewer instances than it wants and its newest
scaling activity failed (on AWS as in the sandbox: "Launching a new EC2 instance.  Status Reason: You
have requested more vCPU capacity than your current vCPU limit of N allows ...", or for a fleet on
spot capacity "Max spot instance count exceeded."). Which quota holds it back follows from its
launch template's market (:func:`labkit.infra.quotas.vcpu_quota`): the On-Demand standard vCPUs,
or the standard Spot vCPUs (staging's fleets). What to request (:func:`vcpus_needed`), per quota:
the vCPUs in use, plus the ones the held-back fleets still lack, plus room for the next blue/green
deploy, which runs the idle color at the live one's size for a while.

The request goes through the Service Quotas API (``RequestServiceQuotaIncrease``) on both targets.
On AWS it is reviewed (``PENDING``, sometimes a support case) and Verify fails until it is granted;
the sandbox grants it at once. A request still open is not filed twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd

from labkit.infra import quotas
from labkit.infra.quotas import VCPU_QUOTAS, Quota, market_of, vcpu_quota
from labkit.infra.stack import Stack
from labkit.ops.runbook import Action
from labkit.target import Target

#: Request statuses that mean "still under review" (the Service Quotas API's RequestStatus values).
OPEN_STATUSES = ("PENDING", "CASE_OPENED")
#: How long Verify waits for the fleets to launch what they lack (the sandbox retries every few seconds).
VERIFY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class HeldBack:
    """A fleet below its desired capacity whose last launch failed."""

    group: str
    desired: int
    in_service: int
    instance_type: str
    vcpus_each: int
    reason: str
    market: str = "on-demand"

    @property
    def missing_vcpus(self) -> int:
        return max(0, self.desired - self.in_service) * self.vcpus_each

    @property
    def quota(self) -> Quota:
        """The vCPU quota its launches count toward."""
        return vcpu_quota(self.market)

    def describe(self) -> str:
        shape = self.instance_type if self.market == "on-demand" else f"{self.instance_type}, {self.market}"
        return f"{self.group}: {self.in_service} of {self.desired} running ({shape}); {self.reason}"


@dataclass(frozen=True)
class QuotaFinding:
    """The diagnosis: usage per quota (:func:`labkit.infra.quotas.usage`), the held-back fleets, the
    largest fleet's vCPUs (what a deploy adds), and increase requests still open."""

    table: pd.DataFrame
    held_back: tuple[HeldBack, ...]
    deploy_room_vcpus: int
    open_requests: tuple[dict[str, Any], ...] = field(default=())

    def value(self, quota: Quota) -> float:
        return float(self._row(quota)["value"])

    def usage(self, quota: Quota) -> float:
        return float(self._row(quota)["usage"])

    def _row(self, quota: Quota) -> dict[Any, Any]:
        return next(row for row in self.table.to_dict("records") if row["code"] == quota.code)

    def __str__(self) -> str:
        """What needs attention, in words (the table itself is the cell's output)."""
        full = [row for row in self.table.to_dict("records") if row["headroom"] <= 0]
        lines = [
            f"at its quota: {row['quota']} ({row['service']} {row['code']}), {row['usage']:g} of "
            f"{row['value']:g} {row['counts']}: the next one is refused"
            for row in full
        ] or [f"every quota has headroom ({len(self.table)} read)"]
        lines += [f"held back: {fleet.describe()}" for fleet in self.held_back] or ["no fleet is held back"]
        lines += [
            f"open request: {r['QuotaCode']} to {r['DesiredValue']:g} ({r['Status']})"
            for r in self.open_requests
        ]
        return "\n".join(lines)


def fleets(stack: Stack) -> list[str]:
    """The environment's Auto Scaling groups (its outputs name them)."""
    outputs = stack.outputs()
    return [str(outputs[key]) for key in ("blue_asg_name", "green_asg_name") if outputs.get(key)]


def held_back(target: Target, groups: list[str]) -> list[HeldBack]:
    """The groups of ``groups`` below their desired capacity whose newest scaling activity failed."""
    if not groups:
        return []
    autoscaling = target.client("autoscaling")
    found = []
    for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=groups)["AutoScalingGroups"]:
        in_service = sum(i["LifecycleState"] == "InService" for i in group["Instances"])
        if in_service >= group["DesiredCapacity"]:
            continue
        name = group["AutoScalingGroupName"]
        activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=1)[
            "Activities"
        ]
        if not activities or activities[0]["StatusCode"] != "Failed":
            continue  # launching, not held back
        kind, market = launch_shape(target, group)
        found.append(
            HeldBack(name, int(group["DesiredCapacity"]), in_service, kind, vcpus_of(target, kind),
                     str(activities[0].get("StatusMessage") or activities[0]["Description"]), market)
        )  # fmt: skip
    return found


def launch_shape(target: Target, group: dict[str, Any]) -> tuple[str, str]:
    """The instance type a group launches and its market, "spot" or "on-demand" (its launch
    template's version)."""
    spec = group.get("LaunchTemplate") or {}
    versions = target.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=spec["LaunchTemplateId"], Versions=[spec.get("Version") or "$Default"]
    )["LaunchTemplateVersions"]
    data = versions[0]["LaunchTemplateData"]
    return str(data["InstanceType"]), market_of(data)


def vcpus_of(target: Target, kind: str) -> int:
    found = target.client("ec2").describe_instance_types(InstanceTypes=[kind])["InstanceTypes"]
    return int(found[0]["VCpuInfo"]["DefaultVCpus"])


def inspect(target: Target, stack: Stack) -> QuotaFinding:
    """Read usage against each quota and the environment's fleets (reads only)."""
    groups = fleets(stack)
    table = quotas.usage(target)
    largest = 0
    if groups:
        described = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=groups)
        for group in described["AutoScalingGroups"]:
            largest = max(
                largest, int(group["DesiredCapacity"]) * vcpus_of(target, launch_shape(target, group)[0])
            )
    return QuotaFinding(table, tuple(held_back(target, groups)), largest, tuple(open_vcpu_requests(target)))


def open_requests(target: Target, quota: Quota) -> list[dict[str, Any]]:
    """Increase requests for ``quota`` still under review."""
    client = target.client("service-quotas")
    found: list[dict[str, Any]] = []
    for status in OPEN_STATUSES:
        listed = client.list_requested_service_quota_change_history(
            ServiceCode=quota.service_code, Status=status
        )
        found += [r for r in listed.get("RequestedQuotas", []) if r["QuotaCode"] == quota.code]
    return found


def open_vcpu_requests(target: Target) -> list[dict[str, Any]]:
    """Increase requests still under review for either vCPU quota (:data:`VCPU_QUOTAS`)."""
    return [request for quota in VCPU_QUOTAS for request in open_requests(target, quota)]


def vcpus_needed(in_use: float, missing: float, deploy_room: float) -> float:
    """The vCPU quota that lets the held-back fleets launch and the next deploy run both colors."""
    return in_use + missing + deploy_room


def actions(target: Target, finding: QuotaFinding, *, vcpus: float = 0) -> list[Action]:
    """The Plan: one increase request per vCPU quota that holds a fleet back (the On-Demand one,
    or the Spot one for fleets on spot capacity; ``vcpus`` > 0 requests that value instead of
    :func:`vcpus_needed`'s). Nothing when no fleet is held back or a request is already open
    (Verify then waits for it)."""
    if not finding.held_back or finding.open_requests:
        return []
    found = []
    for quota in VCPU_QUOTAS:
        fleets = [fleet for fleet in finding.held_back if fleet.quota == quota]
        if not fleets:
            continue
        current = finding.value(quota)
        missing = sum(fleet.missing_vcpus for fleet in fleets)
        desired = vcpus or vcpus_needed(finding.usage(quota), missing, finding.deploy_room_vcpus)
        if desired <= current:
            continue  # the quota allows it already: the fleets launch on Auto Scaling's next attempt
        names = ", ".join(fleet.group for fleet in fleets)
        found.append(
            Action(
                f"Request {quota.service_code} {quota.code} ({quota.name}) = {desired:g} vCPUs (now "
                f"{current:g}; {names} lack {missing} vCPUs)",
                partial(request_increase, target, quota, desired),
            )
        )
    return found


def request_increase(target: Target, quota: Quota, desired: float) -> str:
    """File the Service Quotas request; its id and status (APPROVED at once on the sandbox)."""
    answer = target.client("service-quotas").request_service_quota_increase(
        ServiceCode=quota.service_code, QuotaCode=quota.code, DesiredValue=desired
    )["RequestedQuota"]
    return f"request {answer['Id']} for {quota.code} = {desired:g}: {answer['Status']}"


def verify_fleets(target: Target, stack: Stack, *, timeout_s: float = VERIFY_TIMEOUT_S) -> tuple[bool, str]:
    """Every fleet of the environment runs its desired capacity (waits up to ``timeout_s``)."""
    groups = fleets(stack)
    deadline = time.monotonic() + timeout_s
    while True:
        described = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=groups)
        counts = {
            g["AutoScalingGroupName"]: (sum(i["LifecycleState"] == "InService" for i in g["Instances"]),
                                        int(g["DesiredCapacity"]))
            for g in described["AutoScalingGroups"]
        }  # fmt: skip
        detail = ", ".join(f"{name} {have}/{want}" for name, (have, want) in counts.items())
        if all(have >= want for have, want in counts.values()):
            return True, detail
        if time.monotonic() > deadline:
            pending = open_vcpu_requests(target)
            return False, detail + (f"; request still {pending[0]['Status']}" if pending else "")
        time.sleep(1.0)
