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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from labkit.errors import CostError, TerraformDocumentError
from labkit.infra.cost.assumptions import Assumptions, DeployPattern
from labkit.infra.cost.pricers import FREE, ITEM_COLUMNS, OVERHEAD_COMPONENT, PRICERS, Fleet, Pricing
from labkit.infra.cost.prices import PriceTable, price_table
from labkit.infra.tfjson import Document, read_document

#: The roadmap's goal: "Cost increase under $50/month for staging".
MONTHLY_GOAL_USD = 50.0


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
    ctx = Pricing(Document("overhead", [], {}), prices or price_table(), Assumptions(hours_per_month))
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


def _overhead_from_fleets(ctx: Pricing, pattern: DeployPattern) -> pd.DataFrame:
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
    try:
        document = read_document(doc)
    except TerraformDocumentError as exc:
        raise CostError(exc.message, hint=exc.hint) from exc
    ctx = Pricing(document, prices or price_table(), assumptions or Assumptions())
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
            ctx.skip(res, "no price mapping for this resource type; add one to labkit/infra/cost/pricers.py")
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

