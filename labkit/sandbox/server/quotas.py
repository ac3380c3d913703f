"""Service quotas in the sandbox: enforced with AWS's error codes, read and raised through the Service
Quotas API (stock moto enforces none and answers Service Quotas for a few VPC codes only).

The quotas are :data:`labkit.infra.quotas.QUOTAS`. Each region's applied values live on moto's
Service Quotas backend (attribute :data:`APPLIED`, saved with the rest of the state); a region
starts at :data:`SANDBOX_START`. Where that differs from AWS's default it says so: the test suite
and the lessons run many stacks in one sandbox (a blue/green deploy alone runs 8 vCPUs against
AWS's default of 5), as an account whose increases were granted does.

What is refused, as AWS refuses it. The codes are those of the EC2 API's error code list
(docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html) and of the ELBv2 API
reference's CreateLoadBalancer and CreateTargetGroup errors (docs.aws.amazon.com/elasticloadbalancing/
latest/APIReference/API_CreateLoadBalancer.html, .../API_CreateTargetGroup.html); EC2's messages are
the ones it returns, as quoted in public reports (e.g. github.com/4dn-dcic/tibanna/issues/267 for
vCPUs, gist.github.com/rterbush/bc1855e4ad3c704b2d42 for addresses, github.com/hello-nrfcloud/
backend/issues/17 for VPCs), and ELBv2's are its API reference's:

- ``RunInstances`` past the On-Demand standard vCPUs: ``VcpuLimitExceeded``, "You have requested
  more vCPU capacity than your current vCPU limit of N allows for the instance bucket that the
  specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to
  request an adjustment to this limit.";
- ``RunInstances`` on spot capacity (``InstanceMarketOptions``) past the standard Spot vCPUs:
  ``MaxSpotInstanceCountExceeded``, "Max spot instance count exceeded" (the words of "Spot Instance
  quotas", docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html). An Auto Scaling group
  whose launch template asks for spot capacity launches spot instances (stock moto launches them on
  demand), counted against that quota; nothing reclaims them;
- an Auto Scaling launch past either launches what fits and records a failed scaling activity,
  "Launching a new EC2 instance.  Status Reason: <that message> Launching EC2 instance failed.",
  with the cause "... increasing the capacity from N to M." (the shape ``DescribeScalingActivities``
  shows on AWS, e.g. github.com/kubernetes/autoscaler/issues/1263); the service retries every
  :data:`RETRY_S` while the group is below its desired capacity (:func:`retry_launches`), as Auto
  Scaling does;
- ``AllocateAddress``: ``AddressLimitExceeded``, "The maximum number of addresses has been reached.";
- ``CreateVpc``: ``VpcLimitExceeded``, "The maximum number of VPCs has been reached.";
- ``CreateLoadBalancer`` (application): ``TooManyLoadBalancers``, "You've reached the limit on the
  number of load balancers for your AWS account."; ``CreateTargetGroup``: ``TooManyTargetGroups``,
  "You've reached the limit on the number of target groups for your AWS account.".

How a value changes: ``RequestServiceQuotaIncrease`` is applied at once (status ``APPROVED``): on
AWS the same request goes to a review that may take days, so the runbook files the real request
and reports its status; only the wait is shorter here. Lowering a quota has no AWS API (it is
AWS's decision), so a drill lowers it through the sandbox's own control path
(:data:`labkit.sandbox.client.paths.QUOTAS_PATH`, :func:`set_applied`), which no AWS client reaches.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from labkit.infra.quotas import (
    ALBS,
    ELASTIC_IPS,
    QUOTAS,
    SPOT_VCPUS,
    TARGET_GROUPS,
    VCPUS,
    VPCS,
    Quota,
    exceeds,
    find,
    headroom,
    is_standard_type,
    market_of,
    standard_vcpus,
    vcpu_quota,
)

Patch = Callable[[type, str, object], None]

log = logging.getLogger(__name__)

#: The Service Quotas backend attribute holding a region's applied values: {quota code: value}.
APPLIED = "labkit_applied_quotas"
#: ... and its increase requests, oldest first (ListRequestedServiceQuotaChangeHistory).
REQUESTS = "labkit_quota_requests"
#: The values a sandbox region starts with (AWS's defaults, but for vCPUs and VPCs; see above).
SANDBOX_START: dict[str, float] = {
    VCPUS.code: 64.0,
    SPOT_VCPUS.code: 64.0,
    ELASTIC_IPS.code: ELASTIC_IPS.aws_default,
    VPCS.code: 20.0,
    ALBS.code: ALBS.aws_default,
    TARGET_GROUPS.code: TARGET_GROUPS.aws_default,
}
#: Seconds between an Auto Scaling group's launch attempts while it is below its desired capacity.
RETRY_S = 5.0

VCPU_MESSAGE = (
    "You have requested more vCPU capacity than your current vCPU limit of {limit} allows for the "
    "instance bucket that the specified instance type belongs to. Please visit "
    "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
)
SPOT_MESSAGE = "Max spot instance count exceeded"


# --- applied values ---


def _backend(account: str, region: str) -> Any:
    from moto.servicequotas.models import servicequotas_backends

    return servicequotas_backends[account][region]


def applied(account: str, region: str, code: str) -> float:
    """The region's applied value of quota ``code``."""
    values: dict[str, float] = getattr(_backend(account, region), APPLIED, None) or {}
    return float(values.get(code, SANDBOX_START[code]))


def set_applied(account: str, region: str, code: str, value: float) -> float:
    """Set quota ``code`` of the region to ``value`` (the control path; a drill lowers a quota so);
    the previous value."""
    find(code)  # KeyError for a quota the sandbox does not track
    backend = _backend(account, region)
    previous = applied(account, region, code)
    values: dict[str, float] = dict(getattr(backend, APPLIED, None) or {})
    values[code] = float(value)
    setattr(backend, APPLIED, values)
    log.warning("quota %s of %s set to %g (was %g)", code, region, value, previous)
    return previous


def _quota_doc(quota: Quota, region: str, value: float) -> dict[str, Any]:
    """The Service Quotas API's ServiceQuota structure."""
    doc: dict[str, Any] = {
        "ServiceCode": quota.service_code,
        "ServiceName": quota.service_name,
        "QuotaArn": f"arn:aws:servicequotas:{region}::{quota.service_code}/{quota.code}",
        "QuotaCode": quota.code,
        "QuotaName": quota.name,
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }
    if quota is VCPUS:
        doc["UsageMetric"] = {
            "MetricNamespace": "AWS/Usage",
            "MetricName": "ResourceCount",
            "MetricDimensions": {
                "Class": "Standard/OnDemand",
                "Resource": "vCPU",
                "Service": "EC2",
                "Type": "Resource",
            },
            "MetricStatisticRecommendation": "Maximum",
        }
    return doc


# --- usage, read from moto's models ---


def vcpus_of(instance_type: str) -> int:
    """vCPUs of an instance type, from moto's copy of DescribeInstanceTypes (1 for a type it lacks)."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    return int((INSTANCE_TYPES.get(instance_type) or {}).get("VCpuInfo", {}).get("DefaultVCpus", 1))


def standard_vcpus_in_use(ec2_backend: Any, *, spot: bool = False) -> int:
    instances = [(i.instance_type, i.state, i.lifecycle) for i in ec2_backend.all_instances()]
    return standard_vcpus(instances, {kind: vcpus_of(kind) for kind, _, _ in instances}, spot=spot)


def _fitting(ec2_backend: Any, instance_type: str, count: int, *, spot: bool = False) -> tuple[int, float]:
    """How many of ``count`` instances of ``instance_type`` fit the vCPU quota of their market now
    (the Spot one with ``spot``), and the quota."""
    quota = vcpu_quota("spot" if spot else "on-demand")
    limit = applied(ec2_backend.account_id, ec2_backend.region_name, quota.code)
    if not is_standard_type(instance_type):
        return count, limit
    each = vcpus_of(instance_type)
    left = headroom(limit, standard_vcpus_in_use(ec2_backend, spot=spot))
    return min(count, int(left // each)), limit


def vcpu_error(limit: float, *, spot: bool = False) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    if spot:
        return EC2ClientError("MaxSpotInstanceCountExceeded", SPOT_MESSAGE)
    return EC2ClientError("VcpuLimitExceeded", VCPU_MESSAGE.format(limit=f"{limit:g}"))


def launch_message(limit: float, *, spot: bool) -> str:
    """Why a launch was refused, in EC2's words: the Spot quota's or the On-Demand one's."""
    return SPOT_MESSAGE + "." if spot else VCPU_MESSAGE.format(limit=f"{limit:g}")


def template_is_spot(group: Any) -> bool:
    """Whether an Auto Scaling group's launch template (the version it launches) asks for spot."""
    if group.ec2_launch_template is None:
        return False
    return market_of(group.ec2_launch_template.get_version(group.launch_template_version).data) == "spot"


#: Set while an Auto Scaling group whose template asks for spot launches: moto's group calls
#: RunInstances without the template's market options, so the mend below adds them.
_SPOT_LAUNCH: ContextVar[bool] = ContextVar("labkit_spot_launch", default=False)


# --- the mends ---


def mend(patch: Patch) -> None:
    """Patch moto's models and the Service Quotas API with ``patch`` (``mends.apply_mends`` does,
    once, after its own mends: these wrap what those left)."""
    _mend_ec2(patch)
    _mend_elbv2(patch)
    _mend_autoscaling(patch)
    _mend_servicequotas(patch)


def _mend_ec2(patch: Patch) -> None:
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.vpcs import VPCBackend

    stock_run = InstanceBackend.run_instances
    stock_create_vpc = VPCBackend.create_vpc
    stock_allocate = ElasticAddressBackend.allocate_address

    def run_instances(self: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        # moto's own spot requests and fleets pass lifecycle="spot" and are not quota-checked here;
        # RunInstances with spot market options, and Auto Scaling's spot launches, are.
        if kwargs.get("lifecycle") != "spot":
            spot = kwargs.get("instance_market_options") == "spot" or _SPOT_LAUNCH.get()
            fits, limit = _fitting(self, _requested_type(self, kwargs), count, spot=spot)
            if fits < count:
                raise vcpu_error(limit, spot=spot)
            if spot:
                kwargs["lifecycle"] = "spot"  # what DescribeInstances shows as InstanceLifecycle
        return stock_run(self, image_id, count, *args, **kwargs)

    def create_vpc(self: Any, *args: Any, **kwargs: Any) -> Any:
        limit = applied(self.account_id, self.region_name, VPCS.code)
        # The default VPC is AWS's own (it counts toward the quota, but is never refused).
        if not kwargs.get("is_default") and exceeds(limit, len(self.vpcs), 1):
            raise EC2ClientError("VpcLimitExceeded", "The maximum number of VPCs has been reached.")
        return stock_create_vpc(self, *args, **kwargs)

    def allocate_address(self: Any, *args: Any, **kwargs: Any) -> Any:
        limit = applied(self.account_id, self.region_name, ELASTIC_IPS.code)
        if exceeds(limit, len(self.addresses), 1):
            raise EC2ClientError("AddressLimitExceeded", "The maximum number of addresses has been reached.")
        return stock_allocate(self, *args, **kwargs)

    patch(InstanceBackend, "run_instances", run_instances)
    patch(VPCBackend, "create_vpc", create_vpc)
    patch(ElasticAddressBackend, "allocate_address", allocate_address)


def _requested_type(ec2_backend: Any, kwargs: dict[str, Any]) -> str:
    """The instance type RunInstances will launch (a launch template's own when none was given)."""
    kind = str(kwargs.get("instance_type") or "m1.small")
    if kwargs.get("launch_template") and kwargs.get("is_instance_type_default"):
        data = ec2_backend._get_template_from_args(kwargs["launch_template"]).data
        kind = str(data.get("InstanceType") or kind)
    return kind


def _mend_elbv2(patch: Patch) -> None:
    from moto.elbv2 import models
    from moto.elbv2.exceptions import ELBClientError

    stock_create_lb = models.ELBv2Backend.create_load_balancer
    stock_create_group = models.ELBv2Backend.create_target_group

    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (kwargs.get("loadbalancer_type") or "application") == "application":
            albs = sum(lb.type == "application" for lb in self.load_balancers.values())
            if exceeds(applied(self.account_id, self.region_name, ALBS.code), albs, 1):
                raise ELBClientError(
                    "TooManyLoadBalancers",
                    "You've reached the limit on the number of load balancers for your AWS account.",
                )
        return stock_create_lb(self, *args, **kwargs)

    def create_target_group(self: Any, name: str, **kwargs: Any) -> Any:
        if exceeds(
            applied(self.account_id, self.region_name, TARGET_GROUPS.code), len(self.target_groups), 1
        ):
            raise ELBClientError(
                "TooManyTargetGroups",
                "You've reached the limit on the number of target groups for your AWS account.",
            )
        return stock_create_group(self, name, **kwargs)

    patch(models.ELBv2Backend, "create_load_balancer", create_load_balancer)
    patch(models.ELBv2Backend, "create_target_group", create_target_group)


def _mend_autoscaling(patch: Patch) -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    stock_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        ec2_backend = self.autoscaling_backend.ec2_backend
        spot = template_is_spot(self)
        fits, limit = _fitting(ec2_backend, self.instance_type, count_needed, spot=spot)
        before = len(self.active_instances())
        if fits > 0:
            token = _SPOT_LAUNCH.set(spot)
            try:
                stock_replace(self, fits, propagated_tags)
            finally:
                _SPOT_LAUNCH.reset(token)
        if fits < count_needed:
            _record_failed_launch(self, before, limit, spot=spot)
        self.labkit_last_launch = datetime.now(UTC)

    patch(FakeAutoScalingGroup, "replace_autoscaling_group_instances", replace_autoscaling_group_instances)


def _record_failed_launch(group: Any, current: int, limit: float, *, spot: bool) -> None:
    from labkit.sandbox.server import healing

    moment = datetime.now(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    reason = launch_message(limit, spot=spot) + " Launching EC2 instance failed."
    subnet = (group.vpc_zone_identifier or "").split(",")[0]
    healing.record(
        group.autoscaling_backend,
        group.name,
        f"Launching a new EC2 instance.  Status Reason: {reason}",
        f"At {stamp} an instance was started in response to a difference between desired and actual "
        f"capacity, increasing the capacity from {current} to {group.desired_capacity}.",
        moment,
        status_code="Failed",
        status_message=reason,
        details={"Subnet ID": subnet, "Availability Zone": (group.availability_zones or [""])[0]},
    )
    log.warning("auto scaling group %s could not launch: vCPU quota %g reached", group.name, limit)


def retry_launches(now: datetime | None = None) -> list[str]:
    """Launch again for every group below its desired capacity whose last attempt is
    :data:`RETRY_S` old (call with the model lock held); the groups tried."""
    from moto.autoscaling.models import autoscaling_backends

    moment = now or datetime.now(UTC)
    tried: list[str] = []
    backend: Any
    for _account, _region, backend in list(autoscaling_backends.iter_backends()):
        for group in list(backend.autoscaling_groups.values()):
            last = getattr(group, "labkit_last_launch", None)
            if last is None or (moment - last).total_seconds() < RETRY_S:
                continue
            if len(group.active_instances()) >= (group.desired_capacity or 0):
                continue
            group.set_desired_capacity(group.desired_capacity)
            tried.append(group.name)
    return tried


def _mend_servicequotas(patch: Patch) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.servicequotas.exceptions import NoSuchResource
    from moto.servicequotas.responses import ServiceQuotasResponse

    stock_defaults = ServiceQuotasResponse.list_aws_default_service_quotas

    def tracked(service: str, code: str | None = None) -> list[Quota]:
        return [q for q in QUOTAS if q.service_code == service and code in (None, q.code)]

    def params(self: Any) -> dict[str, Any]:
        return dict(json.loads(self.body or "{}"))

    def stock_list(self: Any, service: str) -> list[dict[str, Any]]:
        if service != "vpc":
            return []
        listed: list[dict[str, Any]] = json.loads(stock_defaults(self))["Quotas"]
        mine = {q.code for q in QUOTAS}
        return [q for q in listed if q["QuotaCode"] not in mine]

    def one(self: Any, *, default: bool) -> str:
        p = params(self)
        found = tracked(str(p.get("ServiceCode")), str(p.get("QuotaCode")))
        if found:
            quota = found[0]
            value = quota.aws_default if default else applied(self.current_account, self.region, quota.code)
            return json.dumps({"Quota": _quota_doc(quota, self.region, value)})
        return json.dumps(
            {"Quota": self.backend.get_service_quota(str(p.get("ServiceCode")), str(p.get("QuotaCode")))}
        )

    def listing(self: Any, *, default: bool) -> str:
        service = str(params(self).get("ServiceCode"))
        quotas = [
            _quota_doc(
                q,
                self.region,
                q.aws_default if default else applied(self.current_account, self.region, q.code),
            )
            for q in tracked(service)
        ] + stock_list(self, service)
        if not quotas:
            raise NoSuchResource()
        return json.dumps({"Quotas": quotas})

    def request_service_quota_increase(self: Any) -> str:
        p = params(self)
        found = tracked(str(p.get("ServiceCode")), str(p.get("QuotaCode")))
        if not found:
            raise NoSuchResource()
        quota, desired = found[0], float(p.get("DesiredValue") or 0)
        current = applied(self.current_account, self.region, quota.code)
        if desired <= current:
            # AWS refuses a request that is not an increase; this wording is the sandbox's own.
            raise JsonRESTError(
                "IllegalArgumentException",
                f"The desired value {desired:g} is not above the quota's current value {current:g}.",
            )
        set_applied(self.current_account, self.region, quota.code, desired)
        now = datetime.now(UTC).timestamp()
        request = {
            "Id": uuid.uuid4().hex, "ServiceCode": quota.service_code, "ServiceName": quota.service_name,
            "QuotaCode": quota.code, "QuotaName": quota.name, "DesiredValue": desired, "Status": "APPROVED",
            "Created": now, "LastUpdated": now, "Requester": self.current_account,
            "QuotaArn": _quota_doc(quota, self.region, desired)["QuotaArn"], "GlobalQuota": False,
            "Unit": "None", "QuotaRequestedAtLevel": "ACCOUNT",
        }  # fmt: skip
        backend = self.backend
        setattr(backend, REQUESTS, [*(getattr(backend, REQUESTS, None) or []), request])
        return json.dumps({"RequestedQuota": request})

    def list_requested_service_quota_change_history(self: Any) -> str:
        p = params(self)
        kept: Iterable[dict[str, Any]] = getattr(self.backend, REQUESTS, None) or []
        found = [
            r for r in kept
            if p.get("ServiceCode") in (None, r["ServiceCode"]) and p.get("Status") in (None, r["Status"])
        ]  # fmt: skip
        return json.dumps({"RequestedQuotas": found})

    responses = {
        "get_service_quota": lambda self: one(self, default=False),
        "get_aws_default_service_quota": lambda self: one(self, default=True),
        "list_service_quotas": lambda self: listing(self, default=False),
        "list_aws_default_service_quotas": lambda self: listing(self, default=True),
        "request_service_quota_increase": request_service_quota_increase,
        "list_requested_service_quota_change_history": list_requested_service_quota_change_history,
    }
    for name, handler in responses.items():
        patch(ServiceQuotasResponse, name, handler)
