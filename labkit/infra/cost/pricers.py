"""Pricing each resource type: a plan's or state's resources to line items with a quantity a month.

:data:`PRICERS` maps a resource type to its pricer; :data:`FREE` lists the types with no charge of their
own and why. A type in neither is reported as not priced, never silently zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.infra.cost.assumptions import Assumptions
from labkit.infra.cost.prices import PriceTable
from labkit.infra.tfjson import Document, Resource, module_calls

ITEM_COLUMNS = [
    "component",
    "address",
    "resource_type",
    "price_key",
    "quantity",
    "unit",
    "unit_price_usd",
    "monthly_usd",
    "basis",
]
OVERHEAD_COMPONENT = "blue/green overhead"


@dataclass(frozen=True)
class Fleet:
    """An auto scaling group as priced: what runs in it and how many."""

    address: str
    color: str | None
    instance_type: str
    market: str  # "on-demand" or "spot"
    capacity: int
    volumes: tuple[tuple[float, str], ...]  # (GB, type) per instance
    public_ip: bool


@dataclass
class Pricing:
    doc: Document
    prices: PriceTable
    assume: Assumptions
    items: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[dict[str, str]] = field(default_factory=list)
    free: list[dict[str, str]] = field(default_factory=list)
    fleets: list[Fleet] = field(default_factory=list)

    def line(self, component: str, res: Resource | str, key: str, quantity: float, basis: str) -> None:
        price = self.prices[key]
        address, rtype = (res.address, res.type) if isinstance(res, Resource) else (res, "")
        self.items.append(
            {
                "component": component,
                "address": address,
                "resource_type": rtype,
                "price_key": key,
                "quantity": float(quantity),
                "unit": price.unit,
                "unit_price_usd": price.usd,
                "monthly_usd": float(quantity) * price.usd,
                "basis": basis,
            }
        )

    def skip(self, res: Resource, reason: str) -> None:
        self.unpriced.append({"address": res.address, "resource_type": res.type, "reason": reason})

    # -- resolving references in a plan ---------------------------------------------------------

    def _config_resource(self, res: Resource) -> Mapping[str, Any] | None:
        module: Mapping[str, Any] = self.doc.configuration
        for call in module_calls(res.module):
            module = module.get("module_calls", {}).get(call, {}).get("module", {})
        return next((r for r in module.get("resources", []) if r.get("address") == res.local_address), None)

    def referenced(self, res: Resource, *path: str | int) -> list[Resource]:
        """The resources (in ``res``'s module instance) that an argument of ``res`` refers to."""
        node: Any = (self._config_resource(res) or {}).get("expressions", {})
        for step in path:
            if isinstance(step, int):
                node = node[step] if isinstance(node, list) and len(node) > step else {}
            else:
                node = node.get(step, {}) if isinstance(node, Mapping) else {}
        refs = node.get("references", []) if isinstance(node, Mapping) else []
        for ref in refs:
            match = re.match(r"^(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)", ref)
            if match:
                local = f"{match.group(1)}.{match.group(2)}"
                found = [r for r in self.doc.resources if r.module == res.module and r.local_address == local]
                if found:
                    return found
        return []

    def find(self, rtype: str, res: Resource, **values: Any) -> list[Resource]:
        """Resources of ``rtype`` whose values match, preferring ``res``'s own module instance."""
        wanted = {k: v for k, v in values.items() if v not in (None, "", "unknown")}
        if not wanted:
            return []
        found = [
            r
            for r in self.doc.resources
            if r.type == rtype and any(r.values.get(k) == v for k, v in wanted.items())
        ]
        return sorted(found, key=lambda r: r.module != res.module)


def _first(value: Any) -> Mapping[str, Any]:
    """The first block of a nested block list (Terraform renders blocks as lists of objects)."""
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0]
    return {}


def _color(res: Resource) -> str | None:
    tags = [str(t.get("value", "")) for t in res.values.get("tag") or [] if isinstance(t, Mapping)]
    tags += [str(v) for v in (res.values.get("tags") or {}).values()]
    text = " ".join([res.address, str(res.values.get("name") or ""), *tags]).lower()
    colors = [c for c in ("blue", "green") if re.search(rf"\b{c}\b", text)]
    return colors[0] if len(colors) == 1 else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# -- per resource type --------------------------------------------------------------------------


def _volumes_of(block_devices: Iterable[Mapping[str, Any]], assume: Assumptions) -> list[tuple[float, str]]:
    volumes = []
    for device in block_devices:
        ebs = _first(device.get("ebs")) if "ebs" in device else device
        size = ebs.get("volume_size")
        if size:
            volumes.append((float(size), str(ebs.get("volume_type") or "gp3")))
    return volumes or [(assume.root_volume_gb, assume.root_volume_type)]


def _price_ec2(ctx: Pricing, res: Resource, component: str, count: float, fleet: Fleet, basis: str) -> None:
    hours = ctx.assume.hours_per_month
    key = f"ec2.{fleet.market}.{fleet.instance_type}"
    if key not in ctx.prices:
        ctx.skip(
            res,
            f"instance type {fleet.instance_type} ({fleet.market}) is not in the price table; add "
            f"{key} to labkit/infra/cost/data/prices.json",
        )
        return
    ctx.line(component, res, key, count * hours, f"{basis} x {hours:g} h")
    for gb, vtype in fleet.volumes:
        vkey = f"ebs.{vtype}.gb-month"
        if vkey not in ctx.prices:
            ctx.skip(res, f"EBS volume type {vtype} is not in the price table")
            continue
        ctx.line("EBS storage", res, vkey, count * gb, f"{basis} x {gb:g} GB {vtype} per instance")
    if fleet.public_ip:
        ctx.line(
            "public IPv4",
            res,
            "vpc.public-ipv4.hour",
            count * hours,
            f"{basis} x 1 public IPv4 x {hours:g} h",
        )


def _launch_template_for(ctx: Pricing, asg: Resource) -> Resource | None:
    blocks = asg.values.get("launch_template") or []
    spec = _first(blocks)  # in a plan, every value of it may be unknown: [{}]
    path: tuple[str | int, ...] = ("launch_template", 0, "id")
    if not blocks:  # a mixed instances policy names its template deeper down
        policy = _first(asg.values.get("mixed_instances_policy"))
        spec = _first(_first(policy.get("launch_template")).get("launch_template_specification"))
        path = (
            "mixed_instances_policy", 0, "launch_template", 0, "launch_template_specification", 0,
            "launch_template_id",
        )  # fmt: skip
    found = ctx.find("aws_launch_template", asg, id=spec.get("id") or spec.get("launch_template_id"))
    found = found or ctx.find(
        "aws_launch_template", asg, name=spec.get("name") or spec.get("launch_template_name")
    )
    found = found or ctx.referenced(asg, *path)
    if not found and path[0] == "launch_template":
        found = ctx.referenced(asg, "launch_template", 0, "name")
    return found[0] if found else None


def _asg(ctx: Pricing, res: Resource) -> None:
    template = _launch_template_for(ctx, res)
    if template is None:
        ctx.skip(
            res,
            "its launch template could not be found in the plan or state, so the instance type is "
            "unknown; price it with blue_green_overhead() or keep the template in the same configuration",
        )
        return
    lt = template.values
    capacity = res.values.get("desired_capacity")
    basis = f"desired capacity {capacity}"
    if capacity is None:
        capacity = res.values.get("min_size") or 0
        basis = f"min size {capacity} (no desired capacity set)"
    market = "spot" if _first(lt.get("instance_market_options")).get("market_type") == "spot" else "on-demand"
    nic = _first(lt.get("network_interfaces"))
    fleet = Fleet(
        address=res.address,
        color=_color(res),
        instance_type=str(lt.get("instance_type") or "unknown"),
        market=market,
        capacity=int(capacity),
        volumes=tuple(_volumes_of(lt.get("block_device_mappings") or [], ctx.assume)),
        public_ip=_truthy(nic.get("associate_public_ip_address")),
    )
    ctx.fleets.append(fleet)
    component = f"EC2 compute ({fleet.color})" if fleet.color else "EC2 compute"
    _price_ec2(ctx, res, component, fleet.capacity, fleet, f"{basis} ({template.address})")


def _instance(ctx: Pricing, res: Resource) -> None:
    v = res.values
    market = "spot" if _first(v.get("instance_market_options")).get("market_type") == "spot" else "on-demand"
    root = _first(v.get("root_block_device"))
    volumes = _volumes_of([root] if root else [], ctx.assume)
    volumes += [
        (float(d["volume_size"]), str(d.get("volume_type") or "gp3"))
        for d in v.get("ebs_block_device") or []
        if d.get("volume_size")
    ]
    fleet = Fleet(
        res.address,
        _color(res),
        str(v.get("instance_type")),
        market,
        1,
        tuple(volumes),
        _truthy(v.get("associate_public_ip_address")),
    )
    _price_ec2(ctx, res, "EC2 compute", 1, fleet, "1 instance")


def _lb(ctx: Pricing, res: Resource) -> None:
    kind = res.values.get("load_balancer_type") or "application"
    if kind != "application":
        ctx.skip(res, f"{kind} load balancers are not in the price table (only application)")
        return
    a, hours = ctx.assume, ctx.assume.hours_per_month
    ctx.line("load balancer", res, "elb.alb.hour", hours, f"1 ALB x {hours:g} h")
    ctx.line(
        "load balancer",
        res,
        "elb.alb.lcu-hour",
        a.alb_lcu_per_hour * hours,
        f"{a.alb_lcu_per_hour:.3g} LCU (max of {a.alb_new_connections_per_s:g} new conn/s / 25, "
        f"{a.alb_active_connections_per_min:g} active conn/min / 3000, {a.alb_gb_processed_per_hour:g} GB/h, "
        f"{a.alb_rule_evaluations_per_s:g} rule evals/s / 1000) x {hours:g} h",
    )
    if _truthy(res.values.get("internal")):
        return
    subnets = res.values.get("subnets") or [m for m in res.values.get("subnet_mapping") or []]
    how = "subnets"
    if not subnets:
        subnets = ctx.referenced(res, "subnets")
        how = "subnets referenced in the configuration"
    count = len(subnets) or a.alb_public_ips_when_unknown
    if not subnets:
        how = "assumed: subnets unknown"
    ctx.line(
        "public IPv4",
        res,
        "vpc.public-ipv4.hour",
        count * hours,
        f"{count} public IPv4 (one per AZ; {how}) x {hours:g} h",
    )


def _nat(ctx: Pricing, res: Resource) -> None:
    hours = ctx.assume.hours_per_month
    ctx.line("NAT gateway", res, "vpc.nat-gateway.hour", hours, f"1 NAT gateway x {hours:g} h")
    gb = ctx.assume.nat_gb_processed_per_month
    ctx.line("NAT gateway", res, "vpc.nat-gateway.gb", gb, f"assumed {gb:g} GB processed a month")


def _eip(ctx: Pricing, res: Resource) -> None:
    hours = ctx.assume.hours_per_month
    ctx.line("public IPv4", res, "vpc.public-ipv4.hour", hours, f"1 Elastic IP x {hours:g} h")


def _ebs_volume(ctx: Pricing, res: Resource) -> None:
    vtype = str(res.values.get("type") or "gp3")
    key = f"ebs.{vtype}.gb-month"
    if key not in ctx.prices:
        ctx.skip(res, f"EBS volume type {vtype} is not in the price table")
        return
    size = float(res.values.get("size") or 0)
    ctx.line("EBS storage", res, key, size, f"{size:g} GB {vtype}")
    iops, throughput = res.values.get("iops") or 0, res.values.get("throughput") or 0
    if vtype == "gp3" and (iops > 3000 or throughput > 125):
        ctx.skip(
            res,
            f"gp3 IOPS/throughput above the included 3,000 IOPS / 125 MB/s ({iops}, {throughput}) "
            "are not in the price table",
        )


def _s3_bucket(ctx: Pricing, res: Resource) -> None:
    a = ctx.assume
    ctx.line(
        "S3", res, "s3.standard.gb-month", a.s3_gb_per_bucket, f"assumed {a.s3_gb_per_bucket:g} GB stored"
    )
    ctx.line(
        "S3",
        res,
        "s3.standard.put-1k",
        a.s3_put_requests_per_month / 1000,
        f"assumed {a.s3_put_requests_per_month:,.0f} PUT/LIST a month",
    )
    ctx.line(
        "S3",
        res,
        "s3.standard.get-1k",
        a.s3_get_requests_per_month / 1000,
        f"assumed {a.s3_get_requests_per_month:,.0f} GET a month",
    )


def _dynamodb(ctx: Pricing, res: Resource) -> None:
    a, hours = ctx.assume, ctx.assume.hours_per_month
    if res.values.get("billing_mode") == "PROVISIONED":
        rcu, wcu = float(res.values.get("read_capacity") or 0), float(res.values.get("write_capacity") or 0)
        ctx.line("DynamoDB", res, "dynamodb.provisioned.rcu-hour", rcu * hours, f"{rcu:g} RCU x {hours:g} h")
        ctx.line("DynamoDB", res, "dynamodb.provisioned.wcu-hour", wcu * hours, f"{wcu:g} WCU x {hours:g} h")
    else:
        ctx.line(
            "DynamoDB",
            res,
            "dynamodb.on-demand.read-1m",
            a.dynamodb_reads_per_month / 1e6,
            f"assumed {a.dynamodb_reads_per_month:,.0f} read units a month",
        )
        ctx.line(
            "DynamoDB",
            res,
            "dynamodb.on-demand.write-1m",
            a.dynamodb_writes_per_month / 1e6,
            f"assumed {a.dynamodb_writes_per_month:,.0f} write units a month",
        )
    ctx.line(
        "DynamoDB",
        res,
        "dynamodb.storage.gb-month",
        a.dynamodb_gb_per_table,
        f"assumed {a.dynamodb_gb_per_table:g} GB stored",
    )


def _kms_key(ctx: Pricing, res: Resource) -> None:
    n = ctx.assume.kms_requests_per_month
    ctx.line("KMS", res, "kms.key-month", 1, "1 customer managed key")
    ctx.line("KMS", res, "kms.requests-10k", n / 10_000, f"assumed {n:,.0f} requests a month")


def _secret(ctx: Pricing, res: Resource, what: str = "1 secret") -> None:
    n = ctx.assume.secrets_api_calls_per_month
    ctx.line("Secrets Manager", res, "secretsmanager.secret-month", 1, what)
    ctx.line(
        "Secrets Manager", res, "secretsmanager.api-10k", n / 10_000, f"assumed {n:,.0f} API calls a month"
    )


def _db_instance(ctx: Pricing, res: Resource) -> None:
    """Instance-hours, allocated storage and backups beyond the free allowance, and the master user's
    secret when RDS manages it (it lives in Secrets Manager and is billed there). Only allocated storage
    is billed: storage autoscaling's ceiling costs nothing until used. The project's KMS key is priced
    where it is created (global)."""
    v, a, hours = res.values, ctx.assume, ctx.assume.hours_per_month
    engine, dbclass = str(v.get("engine") or "unknown"), str(v.get("instance_class") or "unknown")
    deployment = "multi-az" if _truthy(v.get("multi_az")) else "single-az"
    key = f"rds.{engine}.{deployment}.{dbclass}"
    if key not in ctx.prices:
        ctx.skip(
            res,
            f"DB instance class {dbclass} ({engine}, {deployment}) is not in the price table; add {key} to "
            "labkit/infra/cost/data/prices.json",
        )
        return
    ctx.line("RDS database", res, key, hours, f"1 {dbclass} ({deployment}) x {hours:g} h")
    size, stype = float(v.get("allocated_storage") or 0), v.get("storage_type")
    skey = f"rds.storage.{stype}.{deployment}.gb-month"
    if skey in ctx.prices:
        ctx.line("RDS database", res, skey, size, f"{size:g} GB {stype} allocated ({deployment})")
    else:
        ctx.skip(res, f"RDS storage type {stype or 'unknown'} is not in the price table")
    # Unset, RDS keeps a day of backups: only an explicit 0 turns them off.
    retention = v.get("backup_retention_period")
    if retention != 0:
        kept = "RDS's default retention" if retention is None else f"{retention} days kept"
        ctx.line(
            "RDS database",
            res,
            "rds.backup.gb-month",
            max(0.0, a.rds_backup_gb - size),
            f"assumed {a.rds_backup_gb:g} GB of backups ({kept}), less {size:g} GB free (100% of the "
            "allocated storage)",
        )
    if int(v.get("monitoring_interval") or 0) > 0:
        ctx.skip(res, "enhanced monitoring's CloudWatch Logs charges are not in the price table")
    if _truthy(v.get("manage_master_user_password")):
        _secret(ctx, res, "1 secret: the master user's, managed by RDS")


def _alarm(ctx: Pricing, res: Resource) -> None:
    queries = [q for q in res.values.get("metric_query") or [] if _first(q.get("metric"))]
    metrics = len(queries) if queries else 1
    periods = [int(_first(q.get("metric")).get("period") or 60) for q in queries] or [
        int(res.values.get("period") or 60)
    ]
    high_res = min(periods) < 60
    key = "cloudwatch.alarm.high-resolution" if high_res else "cloudwatch.alarm.standard"
    ctx.line("CloudWatch", res, key, metrics, f"{metrics} metric(s), period {min(periods)} s")


def _composite_alarm(ctx: Pricing, res: Resource) -> None:
    ctx.line("CloudWatch", res, "cloudwatch.alarm.composite", 1, "1 composite alarm")


def _dashboard(ctx: Pricing, res: Resource) -> None:
    ctx.line("CloudWatch", res, "cloudwatch.dashboard.month", 1, "1 dashboard")


def _log_group(ctx: Pricing, res: Resource) -> None:
    a = ctx.assume
    ctx.line(
        "CloudWatch",
        res,
        "cloudwatch.logs.ingest-gb",
        a.log_gb_ingested_per_month,
        f"assumed {a.log_gb_ingested_per_month:g} GB ingested a month",
    )
    ctx.line(
        "CloudWatch",
        res,
        "cloudwatch.logs.storage-gb-month",
        a.log_gb_stored,
        f"assumed {a.log_gb_stored:g} GB kept",
    )


PRICERS: dict[str, Callable[[Pricing, Resource], None]] = {
    "aws_autoscaling_group": _asg,
    "aws_instance": _instance,
    "aws_lb": _lb,
    "aws_alb": _lb,
    "aws_nat_gateway": _nat,
    "aws_eip": _eip,
    "aws_ebs_volume": _ebs_volume,
    "aws_s3_bucket": _s3_bucket,
    "aws_dynamodb_table": _dynamodb,
    "aws_kms_key": _kms_key,
    "aws_secretsmanager_secret": _secret,
    "aws_db_instance": _db_instance,
    "aws_cloudwatch_metric_alarm": _alarm,
    "aws_cloudwatch_composite_alarm": _composite_alarm,
    "aws_cloudwatch_dashboard": _dashboard,
    "aws_cloudwatch_log_group": _log_group,
}

_NETWORK = "networking configuration; no charge of its own"
#: Resource types with no charge of their own, and why.
FREE: dict[str, str] = {
    **dict.fromkeys(
        [
            "aws_vpc",
            "aws_subnet",
            "aws_internet_gateway",
            "aws_egress_only_internet_gateway",
            "aws_route_table",
            "aws_route",
            "aws_route_table_association",
            "aws_main_route_table_association",
            "aws_default_route_table",
            "aws_default_security_group",
            "aws_default_network_acl",
            "aws_network_acl",
            "aws_network_acl_rule",
            "aws_security_group",
            "aws_security_group_rule",
            "aws_vpc_security_group_ingress_rule",
            "aws_vpc_security_group_egress_rule",
            "aws_vpc_dhcp_options",
            "aws_vpc_dhcp_options_association",
        ],
        _NETWORK,
    ),
    **dict.fromkeys(
        [
            "aws_lb_target_group",
            "aws_alb_target_group",
            "aws_lb_listener",
            "aws_alb_listener",
            "aws_lb_listener_rule",
            "aws_alb_listener_rule",
            "aws_lb_target_group_attachment",
        ],
        "part of the load balancer; billed through its hours and LCUs",
    ),
    "aws_launch_template": "a template; its instances are billed through the auto scaling group",
    **dict.fromkeys(
        [
            "aws_autoscaling_attachment",
            "aws_autoscaling_policy",
            "aws_autoscaling_lifecycle_hook",
            "aws_autoscaling_schedule",
        ],
        "auto scaling configuration; no charge of its own",
    ),
    **dict.fromkeys(
        [
            "aws_iam_role",
            "aws_iam_policy",
            "aws_iam_role_policy",
            "aws_iam_role_policy_attachment",
            "aws_iam_instance_profile",
            "aws_iam_openid_connect_provider",
            "aws_iam_policy_attachment",
        ],
        "IAM has no charge",
    ),
    **dict.fromkeys(
        [
            "aws_s3_bucket_logging",
            "aws_s3_bucket_acl",
            "aws_s3_bucket_cors_configuration",
            "aws_s3_bucket_notification",
            "aws_s3_bucket_versioning",
            "aws_s3_bucket_server_side_encryption_configuration",
            "aws_s3_bucket_public_access_block",
            "aws_s3_bucket_policy",
            "aws_s3_bucket_lifecycle_configuration",
            "aws_s3_bucket_ownership_controls",
            "aws_s3_object",
        ],
        "bucket configuration or content; billed through the bucket's storage and requests",
    ),
    "aws_kms_alias": "aliases have no charge",
    "aws_secretsmanager_secret_version": "billed through its secret",
    "aws_secretsmanager_secret_rotation": "rotation has no charge of its own (a rotation Lambda, where one "
    "is set, is billed by Lambda; RDS-managed rotation needs none)",
    "aws_db_subnet_group": _NETWORK,
    **dict.fromkeys(
        ["aws_db_parameter_group", "aws_db_option_group"],
        "database configuration; billed through the DB instance",
    ),
    "aws_dynamodb_table_item": "billed through its table's storage and requests",
    "aws_sns_topic": "topics have no charge; the first million publishes a month are free",
    "aws_sns_topic_subscription": "subscriptions have no charge",
    "aws_sns_topic_policy": "topic policies have no charge",
    "aws_ssm_parameter": "standard parameters have no charge",
    "aws_budgets_budget": "the first two budgets of an account have no charge",
    "aws_cloudwatch_log_stream": "billed through its log group",
}


