"""What a stack costs per month on AWS, from its Terraform plan or state and a dated price table.

**The prices are list prices, not live ones.** ``labkit/infra/cost/data/prices.json`` holds us-east-1
list prices written down from the AWS pricing pages (each entry names its page) as of the date in the file.
They were not fetched live, and AWS changes prices: re-read the linked pages before relying on a figure,
and update the entries and their ``as_of`` date when you do. :attr:`PriceTable.age_days` says how old
they are. Free tier allowances are not subtracted: the figures are for an account past its free tier.

The model, :func:`estimate_cost`:

- reads ``terraform show -json`` of a plan (``planned_values.root_module`` and its ``child_modules``),
  ``terraform show -json`` of a state (``values.root_module``), or ``terraform state pull`` (raw state);
- maps each billable resource type to price table entries with a quantity per month. Every quantity that
  is not in the resource itself comes from :class:`Assumptions` (730 hours a month, traffic, storage,
  requests), and each line item says how its quantity was derived (the ``basis`` column);
- returns the line items as a DataFrame (component, address, price key, quantity, unit, unit price,
  monthly USD), so every figure traces to one price table entry; resources with no charge of their own
  (VPCs, security groups, target groups ...) are listed as free, and unknown resource types as unpriced,
  never silently zero;
- adds the blue/green overhead when given a :class:`DeployPattern`: the idle color is brought up to the
  live color's capacity for each deploy, so it costs capacity × instance-hour price × hours per deploy ×
  deploys per month (plus its volumes for those hours), as its own line items.

How a plan's unknown values are resolved: an ASG's launch template id is unknown until apply, so the
template is found by name, then through the configuration's references (``aws_launch_template.this``
in the same module instance); an ALB's subnet list is counted the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from labkit.errors import CostError

PRICES_FILE = Path(__file__).parent / "data" / "prices.json"
#: The roadmap's goal: "Cost increase under $50/month for staging".
MONTHLY_GOAL_USD = 50.0

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


# -- the price table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """One price table entry: a unit price for one kind of usage, where it came from and when."""

    key: str
    service: str
    usage: str
    unit: str
    usd: float
    source: str
    as_of: str
    note: str = ""


@dataclass(frozen=True)
class PriceTable:
    """The dated list prices for one region, by key (``ec2.on-demand.t3.micro``, ``elb.alb.hour``...)."""

    region: str
    as_of: str
    note: str
    prices: Mapping[str, Price]

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """Read a price table file (default: the one shipped in ``labkit/infra/cost/data/prices.json``)."""
        path = path or PRICES_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            prices = {row["key"]: Price(**row) for row in doc["prices"]}
            return cls(region=doc["region"], as_of=doc["as_of"], note=doc["note"], prices=prices)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CostError(
                f"The price table {path} cannot be read: {exc}.",
                hint="Restore labkit/infra/cost/data/prices.json from git; each entry needs key, service, "
                "usage, unit, usd, source and as_of.",
            ) from exc

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            family = ".".join(key.split(".")[:2])  # e.g. "ec2.on-demand"
            near = sorted(k for k in self.prices if k.startswith(family)) or sorted(self.prices)[:8]
            raise CostError(
                f"The price table has no entry {key!r}.",
                hint=f"Known entries like it: {', '.join(near)}. Add the entry to "
                "labkit/infra/cost/data/prices.json with its source page and the date you read it.",
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.prices

    def age_days(self, today: date | None = None) -> int:
        """How many days ago the prices were written down."""
        return ((today or date.today()) - date.fromisoformat(self.as_of)).days

    def frame(self) -> pd.DataFrame:
        """The whole table, one row per entry."""
        return pd.DataFrame([asdict(p) for p in self.prices.values()])


def price_table() -> PriceTable:
    """The shipped price table."""
    return PriceTable.load()


# -- what the quantities assume -----------------------------------------------------------------


def _assume(default: Any, meaning: str) -> Any:
    """A dataclass field whose metadata says what the assumption means (shown by Assumptions.frame())."""
    return field(default=default, metadata={"meaning": meaning})


@dataclass(frozen=True)
class Assumptions:
    """Usage that a plan does not say. Each default is for a small, lightly used staging stack."""

    hours_per_month: float = _assume(730.0, "Hours a month (AWS bills by the hour; 730 = 8,760 / 12).")
    alb_new_connections_per_s: float = _assume(
        1.0,
        "ALB new connections per second, averaged (a probe and a few testers, one connection per request).",
    )
    alb_active_connections_per_min: float = _assume(60.0, "ALB active connections per minute, averaged.")
    alb_gb_processed_per_hour: float = _assume(
        0.05,
        "GB through the ALB per hour (about 1 request/s of 14 KB).",
    )
    alb_rule_evaluations_per_s: float = _assume(
        0.0,
        "Billable rule evaluations per second (the first 10 rules are free; the lab's listener has 1).",
    )
    alb_public_ips_when_unknown: int = _assume(
        2,
        "Public IPv4 addresses of an internet-facing ALB when its subnets cannot be counted (one per AZ; "
        "an ALB needs at least two).",
    )
    data_transfer_out_gb_per_month: float = _assume(
        36.5,
        "GB a month out to the internet (= 0.05 GB/h x 730 h: every byte the ALB processes, an upper bound).",
    )
    nat_gb_processed_per_month: float = _assume(
        10.0,
        "GB a month through each NAT gateway (package and image downloads).",
    )
    root_volume_gb: float = _assume(
        8.0,
        "Root volume size when a launch template or instance does not set one (the AMI's; AL2023: 8 GB).",
    )
    root_volume_type: str = _assume("gp3", "Root volume type when not set (AL2023 AMIs use gp3).")
    s3_gb_per_bucket: float = _assume(1.0, "GB stored per bucket (release artifacts, state versions).")
    s3_put_requests_per_month: float = _assume(10_000.0, "PUT/LIST requests a month per bucket.")
    s3_get_requests_per_month: float = _assume(
        100_000.0,
        "GET requests a month per bucket (instances fetching releases, state reads).",
    )
    dynamodb_reads_per_month: float = _assume(1_000_000.0, "Read request units a month per on-demand table.")
    dynamodb_writes_per_month: float = _assume(100_000.0, "Write request units a month per on-demand table.")
    dynamodb_gb_per_table: float = _assume(0.1, "GB stored per table.")
    kms_requests_per_month: float = _assume(
        10_000.0,
        "KMS API requests a month per key (S3 and DynamoDB encryption).",
    )
    secrets_api_calls_per_month: float = _assume(10_000.0, "Secrets Manager API calls a month per secret.")
    log_gb_ingested_per_month: float = _assume(1.0, "GB of logs ingested a month per log group.")
    log_gb_stored: float = _assume(1.0, "GB of logs kept per log group (compressed).")

    def frame(self) -> pd.DataFrame:
        """Each assumption with its value and what it means."""
        return pd.DataFrame(
            [
                {"name": f.name, "value": getattr(self, f.name), "meaning": f.metadata["meaning"]}
                for f in fields(self)
            ]
        )

    @property
    def alb_lcu_per_hour(self) -> float:
        """LCUs billed per hour: the highest of the four dimensions."""
        return max(
            self.alb_new_connections_per_s / 25,
            self.alb_active_connections_per_min / 3000,
            self.alb_gb_processed_per_hour / 1,
            self.alb_rule_evaluations_per_s / 1000,
        )


@dataclass(frozen=True)
class DeployPattern:
    """How often the stack deploys and how long each deploy keeps the idle color up."""

    deploys_per_month: float = 20.0  # about one deploy a working day
    hours_per_deploy: float = 0.5  # idle color scaled up -> canary steps -> bake -> scaled down


# -- reading a plan or a state ------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One managed resource instance, whatever document it was read from."""

    address: str
    module: str  # "" for the root module, else e.g. 'module.fleet["blue"]'
    type: str
    name: str
    values: Mapping[str, Any]

    @property
    def local_address(self) -> str:
        """``type.name`` (without index), as the configuration refers to it."""
        return f"{self.type}.{self.name}"


def _module_calls(module: str) -> tuple[str, ...]:
    """'module.a["x"].module.b[0]' -> ('a', 'b'): the path of module calls in the configuration."""
    return tuple(re.findall(r'module\.([A-Za-z0-9_-]+)(?:\[(?:"(?:[^"\\]|\\.)*"|\d+)\])?', module))


def _walk_modules(module: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield module
    for child in module.get("child_modules", []):
        yield from _walk_modules(child)


def _index_suffix(key: Any) -> str:
    if key is None:
        return ""
    return f"[{key}]" if isinstance(key, int) else f"[{json.dumps(key)}]"


@dataclass(frozen=True)
class _Document:
    kind: str  # "plan", "state" (show -json) or "raw state" (state pull)
    resources: list[Resource]
    configuration: Mapping[str, Any]


def _read_document(doc: Mapping[str, Any] | Path | str) -> _Document:
    if isinstance(doc, (str, Path)):
        path = Path(doc)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CostError(
                f"{path} cannot be read as JSON: {exc}.",
                hint="Give the output of `terraform show -json PLANFILE` or `terraform state pull`.",
            ) from exc
    if not isinstance(doc, Mapping):
        raise CostError("The cost model needs a JSON object.", hint="Pass a parsed plan or state document.")
    if "planned_values" in doc or ("values" in doc and "format_version" in doc):
        kind = "plan" if "planned_values" in doc else "state"
        root = (doc.get("planned_values") or doc.get("values") or {}).get("root_module", {})
        resources = [
            Resource(
                address=r["address"],
                module=module.get("address", ""),
                type=r["type"],
                name=r["name"],
                values=r.get("values") or {},
            )
            for module in _walk_modules(root)
            for r in module.get("resources", [])
            if r.get("mode", "managed") == "managed"
        ]
        configuration = doc.get("configuration", {}).get("root_module", {}) if kind == "plan" else {}
        return _Document(kind, resources, configuration)
    if isinstance(doc.get("resources"), list) and "version" in doc:
        resources = []
        for r in doc["resources"]:
            if r.get("mode") != "managed":
                continue
            module = r.get("module", "")
            for inst in r.get("instances", []):
                local = f"{r['type']}.{r['name']}{_index_suffix(inst.get('index_key'))}"
                resources.append(
                    Resource(
                        address=f"{module}.{local}" if module else local,
                        module=module,
                        type=r["type"],
                        name=r["name"],
                        values=inst.get("attributes") or {},
                    )
                )
        return _Document("raw state", resources, {})
    raise CostError(
        "This JSON is neither a Terraform plan nor a state.",
        hint="Give `terraform show -json PLANFILE` (it has planned_values), `terraform show -json` of a "
        "state (values) or `terraform state pull` (version 4, resources).",
    )


# -- pricing context ----------------------------------------------------------------------------


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
class _Pricing:
    doc: _Document
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
        for call in _module_calls(res.module):
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


def _price_ec2(ctx: _Pricing, res: Resource, component: str, count: float, fleet: Fleet, basis: str) -> None:
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


def _launch_template_for(ctx: _Pricing, asg: Resource) -> Resource | None:
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


def _asg(ctx: _Pricing, res: Resource) -> None:
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


def _instance(ctx: _Pricing, res: Resource) -> None:
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


def _lb(ctx: _Pricing, res: Resource) -> None:
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


def _nat(ctx: _Pricing, res: Resource) -> None:
    hours = ctx.assume.hours_per_month
    ctx.line("NAT gateway", res, "vpc.nat-gateway.hour", hours, f"1 NAT gateway x {hours:g} h")
    gb = ctx.assume.nat_gb_processed_per_month
    ctx.line("NAT gateway", res, "vpc.nat-gateway.gb", gb, f"assumed {gb:g} GB processed a month")


def _eip(ctx: _Pricing, res: Resource) -> None:
    hours = ctx.assume.hours_per_month
    ctx.line("public IPv4", res, "vpc.public-ipv4.hour", hours, f"1 Elastic IP x {hours:g} h")


def _ebs_volume(ctx: _Pricing, res: Resource) -> None:
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


def _s3_bucket(ctx: _Pricing, res: Resource) -> None:
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


def _dynamodb(ctx: _Pricing, res: Resource) -> None:
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


def _kms_key(ctx: _Pricing, res: Resource) -> None:
    n = ctx.assume.kms_requests_per_month
    ctx.line("KMS", res, "kms.key-month", 1, "1 customer managed key")
    ctx.line("KMS", res, "kms.requests-10k", n / 10_000, f"assumed {n:,.0f} requests a month")


def _secret(ctx: _Pricing, res: Resource) -> None:
    n = ctx.assume.secrets_api_calls_per_month
    ctx.line("Secrets Manager", res, "secretsmanager.secret-month", 1, "1 secret")
    ctx.line(
        "Secrets Manager", res, "secretsmanager.api-10k", n / 10_000, f"assumed {n:,.0f} API calls a month"
    )


def _alarm(ctx: _Pricing, res: Resource) -> None:
    queries = [q for q in res.values.get("metric_query") or [] if _first(q.get("metric"))]
    metrics = len(queries) if queries else 1
    periods = [int(_first(q.get("metric")).get("period") or 60) for q in queries] or [
        int(res.values.get("period") or 60)
    ]
    high_res = min(periods) < 60
    key = "cloudwatch.alarm.high-resolution" if high_res else "cloudwatch.alarm.standard"
    ctx.line("CloudWatch", res, key, metrics, f"{metrics} metric(s), period {min(periods)} s")


def _composite_alarm(ctx: _Pricing, res: Resource) -> None:
    ctx.line("CloudWatch", res, "cloudwatch.alarm.composite", 1, "1 composite alarm")


def _dashboard(ctx: _Pricing, res: Resource) -> None:
    ctx.line("CloudWatch", res, "cloudwatch.dashboard.month", 1, "1 dashboard")


def _log_group(ctx: _Pricing, res: Resource) -> None:
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


PRICERS: dict[str, Callable[[_Pricing, Resource], None]] = {
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
    "aws_dynamodb_table_item": "billed through its table's storage and requests",
    "aws_sns_topic": "topics have no charge; the first million publishes a month are free",
    "aws_sns_topic_subscription": "subscriptions have no charge",
    "aws_sns_topic_policy": "topic policies have no charge",
    "aws_ssm_parameter": "standard parameters have no charge",
    "aws_budgets_budget": "the first two budgets of an account have no charge",
    "aws_cloudwatch_log_stream": "billed through its log group",
}


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalCheck:
    """The monthly total against a goal."""

    total_usd: float
    goal_usd: float

    @property
    def within(self) -> bool:
        return self.total_usd <= self.goal_usd

    @property
    def headroom_usd(self) -> float:
        return self.goal_usd - self.total_usd

    def __str__(self) -> str:
        if self.within:
            return (
                f"${self.total_usd:,.2f}/month is within the ${self.goal_usd:,.0f}/month goal "
                f"(${self.headroom_usd:,.2f} to spare)"
            )
        return (
            f"${self.total_usd:,.2f}/month is OVER the ${self.goal_usd:,.0f}/month goal "
            f"by ${-self.headroom_usd:,.2f}"
        )


@dataclass(frozen=True)
class CostEstimate:
    """Line items (``items``), what could not be priced (``unpriced``) and what is free (``free``)."""

    items: pd.DataFrame
    unpriced: pd.DataFrame
    free: pd.DataFrame
    fleets: tuple[Fleet, ...]
    assumptions: Assumptions
    prices: PriceTable
    source_kind: str

    @property
    def complete(self) -> bool:
        """True when every resource was priced or is known to be free."""
        return len(self.unpriced) == 0

    @property
    def total_usd(self) -> float:
        return float(self.items["monthly_usd"].sum()) if len(self.items) else 0.0

    @property
    def overhead_usd(self) -> float:
        rows = self.items[self.items["component"] == OVERHEAD_COMPONENT]
        return float(rows["monthly_usd"].sum())

    def traced(self) -> pd.DataFrame:
        """The line items with the ``source`` page and ``as_of`` date of the price each one uses:
        every dollar of the total back to its price-table entry."""
        prices = self.prices.frame().set_index("key")[["source", "as_of"]]
        return self.items.join(prices, on="price_key")

    def by_component(self) -> pd.Series:
        """Monthly USD per component, largest first."""
        return self.items.groupby("component")["monthly_usd"].sum().sort_values(ascending=False)

    def against_goal(self, goal_usd: float = MONTHLY_GOAL_USD) -> GoalCheck:
        """The total against the roadmap's goal. The roadmap asks for the *increase* to stay under $50; the
        whole stack's cost is an upper bound on that increase, so passing here passes the goal."""
        return GoalCheck(self.total_usd, goal_usd)

    def summary(self) -> str:
        lines = [f"{name:<28} ${usd:>9,.2f}" for name, usd in self.by_component().items()]
        lines.append(f"{'total':<28} ${self.total_usd:>9,.2f}")
        lines.append(str(self.against_goal()))
        lines.append(
            f"prices: {self.prices.region} list prices as of {self.prices.as_of} "
            f"({self.prices.age_days()} days old; re-read the source pages)"
        )
        if len(self.unpriced):
            lines.append(f"NOT PRICED ({len(self.unpriced)}): " + ", ".join(self.unpriced["address"]))
        return "\n".join(lines)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def blue_green_overhead(
    *,
    instance_type: str,
    capacity: int,
    pattern: DeployPattern | None = None,
    market: str = "on-demand",
    volumes: Iterable[tuple[float, str]] = ((8.0, "gp3"),),
    public_ip: bool = False,
    address: str = "(idle color during deploys)",
    prices: PriceTable | None = None,
    hours_per_month: float = 730.0,
) -> pd.DataFrame:
    """The idle color's cost while deploys keep it up: its instance-hours, plus its volumes (and public IPv4
    addresses, when its instances get one) for those hours.

    instance-hours = ``capacity`` x ``pattern.hours_per_deploy`` x ``pattern.deploys_per_month``.
    """
    pattern = pattern or DeployPattern()
    if capacity < 0 or pattern.hours_per_deploy < 0 or pattern.deploys_per_month < 0:
        raise CostError(
            "Capacity, hours per deploy and deploys per month must not be negative.",
            hint=f"Got capacity={capacity}, {pattern}.",
        )
    ctx = _Pricing(_Document("overhead", [], {}), prices or price_table(), Assumptions(hours_per_month))
    up_hours = pattern.hours_per_deploy * pattern.deploys_per_month
    basis = (
        f"{capacity} instance(s) x {pattern.hours_per_deploy:g} h per deploy x "
        f"{pattern.deploys_per_month:g} deploys a month"
    )
    key = f"ec2.{market}.{instance_type}"
    ctx.line(OVERHEAD_COMPONENT, address, key, capacity * up_hours, basis)
    for gb, vtype in volumes:
        ctx.line(
            OVERHEAD_COMPONENT,
            address,
            f"ebs.{vtype}.gb-month",
            capacity * gb * up_hours / hours_per_month,
            f"{basis} x {gb:g} GB {vtype} / {hours_per_month:g} h",
        )
    if public_ip:
        ctx.line(
            OVERHEAD_COMPONENT,
            address,
            "vpc.public-ipv4.hour",
            capacity * up_hours,
            f"{basis} x 1 public IPv4",
        )
    for row in ctx.items:
        row["resource_type"] = "aws_autoscaling_group"
    return _frame(ctx.items, ITEM_COLUMNS)


def _overhead_from_fleets(ctx: _Pricing, pattern: DeployPattern) -> pd.DataFrame:
    colored = {f.color: f for f in ctx.fleets if f.color}
    if set(colored) != {"blue", "green"}:
        found = ", ".join(f"{f.address} ({f.color or 'no color'})" for f in ctx.fleets) or "no ASG"
        raise CostError(
            f"The blue/green overhead needs one blue and one green auto scaling group; found: {found}.",
            hint="Name or tag each color's ASG with 'blue' / 'green', or call blue_green_overhead() with the "
            "idle color's instance type and capacity.",
        )
    live = max(colored.values(), key=lambda f: f.capacity)
    idle = colored["green" if live.color == "blue" else "blue"]
    # During a deploy the idle color runs the new release at the live color's capacity.
    return blue_green_overhead(
        instance_type=idle.instance_type,
        capacity=live.capacity,
        pattern=pattern,
        market=idle.market,
        volumes=idle.volumes,
        public_ip=idle.public_ip,
        address=idle.address,
        prices=ctx.prices,
        hours_per_month=ctx.assume.hours_per_month,
    )


def estimate_cost(
    doc: Mapping[str, Any] | Path | str,
    *,
    assumptions: Assumptions | None = None,
    prices: PriceTable | None = None,
    deploys: DeployPattern | None = None,
) -> CostEstimate:
    """Price a Terraform plan or state per month; with ``deploys``, add the blue/green overhead."""
    document = _read_document(doc)
    ctx = _Pricing(document, prices or price_table(), assumptions or Assumptions())
    for res in document.resources:
        pricer = PRICERS.get(res.type)
        if pricer is not None:
            pricer(ctx, res)
        elif res.type in FREE:
            ctx.free.append({"address": res.address, "resource_type": res.type, "why": FREE[res.type]})
        elif not res.type.startswith("aws_"):
            provider = res.type.split("_", 1)[0]
            ctx.free.append(
                {
                    "address": res.address,
                    "resource_type": res.type,
                    "why": f"not an AWS resource (provider {provider})",
                }
            )
        else:
            ctx.skip(res, "no price mapping for this resource type; add one to labkit/infra/cost/estimate.py")
    if any(r.type in ("aws_lb", "aws_alb", "aws_nat_gateway", "aws_instance") for r in document.resources):
        gb = ctx.assume.data_transfer_out_gb_per_month
        ctx.line(
            "data transfer",
            "(stack egress to the internet)",
            "transfer.out.internet-gb",
            gb,
            f"assumed {gb:g} GB out a month",
        )
    items = _frame(ctx.items, ITEM_COLUMNS)
    if deploys is not None:
        overhead = _overhead_from_fleets(ctx, deploys)
        items = pd.concat([items, overhead], ignore_index=True)
    return CostEstimate(
        items=items,
        unpriced=_frame(ctx.unpriced, ["address", "resource_type", "reason"]),
        free=_frame(ctx.free, ["address", "resource_type", "why"]),
        fleets=tuple(ctx.fleets),
        assumptions=ctx.assume,
        prices=ctx.prices,
        source_kind=document.kind,
    )


__all__ = [
    "MONTHLY_GOAL_USD",
    "Assumptions",
    "CostEstimate",
    "DeployPattern",
    "Fleet",
    "GoalCheck",
    "Price",
    "PriceTable",
    "blue_green_overhead",
    "estimate_cost",
    "price_table",
]
