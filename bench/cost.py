"""Staging's monthly cost with the database, against the roadmap's $50, before and after the cost levers.

Every figure is :func:`labkit.infra.cost.estimate_cost` on a real Terraform plan of staging from
scratch (``Stack.plan_from_scratch``) with the database on (``enable_database``; a KMS key made for
the plan stands in for global's project key, which global pays for), plus the blue/green overhead of
``--deploys`` deploys a month keeping the idle color up ``--hours`` each. The plans run against
moto's server in this process with labkit's mends, as ``bench/stack_build.py --engine moto`` does:
nothing is applied and no sandbox is needed. Prices are the dated list prices of
``labkit/infra/cost/data/prices.json``, not live ones.

Plans, each with blue serving on its capacity and green parked:

- ``before``: staging's defaults (2 x t3.micro on demand per color, each instance with a public
  IPv4 address in a public subnet, no NAT gateway);
- one plan per lever alone: Graviton (``instance_type = t4g.micro``), one instance per color
  (``blue_capacity = 1``), instances without public IPv4 in private subnets behind a NAT gateway
  (``enable_private_subnets``);
- ``after``: the levers taken together, Graviton and one instance per color.

The fleet module has no spot setting, so spot is priced from the ``before`` plan with
:func:`labkit.infra.cost.blue_green_overhead`: for the idle color (its deploy-time hours), and for
the live color (a whole month of its instances), since the color a deploy launches becomes the live
one. It then prints the part of ``after`` that no fleet lever touches, and what the two levers that
need the owner's decision would save on ``after``, priced from its plan but with no setting in the
code yet: spot for the live color's instances, and no CloudWatch dashboard in staging.

    .venv/bin/python bench/cost.py [--deploys 20] [--hours 0.5]

Takes about 2 minutes: five plans of 15-25 s each.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from labkit.infra.cost import (
    MONTHLY_GOAL_USD,
    CostEstimate,
    DeployPattern,
    blue_green_overhead,
    estimate_cost,
)
from labkit.target import Target

#: Blue serves on two instances, green is parked: the deployment lessons build staging with.
DEPLOYMENT = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 2, "green_capacity": 0}
LEVERS: dict[str, dict[str, Any]] = {
    "Graviton: t4g.micro instead of t3.micro": {"instance_type": "t4g.micro"},
    "one instance per color instead of two": {"blue_capacity": 1},
    "no public IPv4 on instances (private subnets + NAT)": {"enable_private_subnets": True},
}
AFTER = {"instance_type": "t4g.micro", "blue_capacity": 1}


def plan_priced(target: Target, variables: dict[str, Any], pattern: DeployPattern) -> CostEstimate:
    from labkit.infra.stack import Stack

    started = time.monotonic()
    plan = Stack("staging", target, reporter=None).plan_from_scratch({**DEPLOYMENT, **variables})
    estimate = estimate_cost(plan.raw, deploys=pattern)
    shown = {k: v for k, v in variables.items() if k != "database_kms_key_arn"}
    print(f"    planned {shown or 'defaults'} in {time.monotonic() - started:.0f} s", flush=True)
    if not estimate.complete:
        raise SystemExit("NOT PRICED: " + ", ".join(estimate.unpriced["address"]))
    return estimate


def spot_saving(instance_type: str, capacity: int, when: DeployPattern) -> float:
    """What spot changes (negative: saves) for ``capacity`` instances of ``instance_type`` up for
    ``when``'s hours, against on-demand."""

    def cost(market: str) -> float:
        return float(
            blue_green_overhead(instance_type=instance_type, capacity=capacity, pattern=when, market=market)[
                "monthly_usd"
            ].sum()
        )

    return cost("spot") - cost("on-demand")


def live_spot_saving(estimate: CostEstimate) -> float:
    """What spot saves on a month of ``estimate``'s live color's instances (priced as one "deploy"
    that lasts the month)."""
    live = max(estimate.fleets, key=lambda f: f.capacity)
    month = DeployPattern(deploys_per_month=1, hours_per_deploy=estimate.assumptions.hours_per_month)
    return spot_saving(live.instance_type, live.capacity, month)


def spot_savings(estimate: CostEstimate, pattern: DeployPattern) -> dict[str, float]:
    """What spot saves on ``estimate``'s fleets: the idle color's deploy-time hours, and a month of the
    live color's instances."""
    live = max(estimate.fleets, key=lambda f: f.capacity)
    idle = next(f for f in estimate.fleets if f.color and f.color != live.color)
    return {
        "spot for the idle color (its deploy-time hours)": spot_saving(
            idle.instance_type, live.capacity, pattern
        ),
        "spot for the live color too (a month of its instances)": live_spot_saving(estimate),
    }


def undecided_savings(after: CostEstimate) -> dict[str, float]:
    """What the levers that need a decision would save on ``after`` (negative: a saving), each read
    from ``after``'s own plan: spot for its live color, and its dashboard's line items."""
    items = after.items
    dashboard = float(items[items["resource_type"] == "aws_cloudwatch_dashboard"]["monthly_usd"].sum())
    return {
        "spot for the live color (a month of its instances)": live_spot_saving(after),
        "no CloudWatch dashboard in staging": -dashboard,
    }


def database_share(estimate: CostEstimate) -> pd.Series:
    items = estimate.items
    mine = items[items["address"].str.contains(r"\.module\.database\[", regex=True)]
    return mine.groupby("price_key")["monthly_usd"].sum().sort_values(ascending=False)


def show(before: CostEstimate, after: CostEstimate) -> None:
    table = pd.DataFrame({"before": before.by_component(), "after": after.by_component()}).fillna(0.0)
    table["change"] = table["after"] - table["before"]
    table = table.sort_values("before", ascending=False)
    print(f"\n{'component':<30} {'before':>10} {'after':>10} {'change':>10}")
    for name, row in table.iterrows():
        print(f"{name:<30} {row['before']:>10.2f} {row['after']:>10.2f} {row['change']:>+10.2f}")
    print(
        f"{'total':<30} {before.total_usd:>10.2f} {after.total_usd:>10.2f} "
        f"{after.total_usd - before.total_usd:>+10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=float, default=20.0, help="deploys a month (default 20)")
    parser.add_argument("--hours", type=float, default=0.5, help="hours the idle color is up per deploy")
    args = parser.parse_args()
    pattern = DeployPattern(deploys_per_month=args.deploys, hours_per_deploy=args.hours)

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-cost-"))
    os.environ["LABKIT_HOME"] = str(work / "home")
    os.environ.setdefault("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    from stack_build import moto_engine  # the in-process moto with labkit's mends

    try:
        with moto_engine(work) as target:
            key = target.client("kms").create_key(Description="stands in for global's project key")
            database = {"enable_database": True, "database_kms_key_arn": key["KeyMetadata"]["Arn"]}
            print("... planning staging with the database", flush=True)
            before = plan_priced(target, database, pattern)
            levers = {name: plan_priced(target, {**database, **v}, pattern) for name, v in LEVERS.items()}
            after = plan_priced(target, {**database, **AFTER}, pattern)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    goal = MONTHLY_GOAL_USD
    print(
        f"\nStaging with the database, per month, {args.deploys:g} deploys of {args.hours:g} h "
        f"({before.prices.region} list prices as of {before.prices.as_of}; "
        f"the RDS entries as of {before.prices['rds.backup.gb-month'].as_of})"
    )
    print(f"\nBEFORE (staging's defaults): ${before.total_usd:,.2f}, {before.against_goal()}")
    share = database_share(before)
    print(f"  the database's share: ${share.sum():,.2f}")
    for price_key, usd in share.items():
        print(f"    {price_key:<38} ${usd:>7,.2f}")

    print("\nLEVERS, each alone against before (a negative change saves):")
    for name, estimate in levers.items():
        print(
            f"  {name:<58} {estimate.total_usd - before.total_usd:>+8.2f}  (plan: ${estimate.total_usd:,.2f})"
        )
    for name, usd in spot_savings(before, pattern).items():
        print(f"  {name:<58} {usd:>+8.2f}  (priced, no spot setting in the fleet module)")

    print(
        f"\nAFTER (Graviton t4g.micro, one instance per color; variables "
        f"{', '.join(f'{k}={v}' for k, v in AFTER.items())}): ${after.total_usd:,.2f}"
    )
    show(before, after)
    print(f"\n{after.against_goal(goal)}")

    items = after.items
    fleet = items["resource_type"] == "aws_autoscaling_group"
    rest = items[~fleet].groupby("component")["monthly_usd"].sum().sort_values(ascending=False)
    live = max(after.fleets, key=lambda f: f.capacity)
    live_rows = items[(items["address"] == live.address) & ~items["component"].str.startswith("EC2 compute")]
    extra = float(live_rows[live_rows["component"] != "blue/green overhead"]["monthly_usd"].sum())
    print(
        f"\nWhat no fleet lever touches: ${rest.sum():,.2f} ("
        + ", ".join(f"{name} ${usd:,.2f}" for name, usd in rest.items())
        + f"); each instance adds ${extra / max(live.capacity, 1):,.2f} besides its compute "
        "(its public IPv4 address and root volume)."
    )
    print(
        f"So with one instance that has a public IPv4 address the floor is "
        f"${rest.sum() + extra / max(live.capacity, 1):,.2f} before any compute, "
        f"against the ${goal:,.0f} goal."
    )

    print("\nNEEDS A DECISION, each priced on after (no setting for either in the code yet):")
    undecided = undecided_savings(after)
    for name, usd in undecided.items():
        print(f"  {name:<58} {usd:>+8.2f}")
    both = after.total_usd + sum(undecided.values())
    verdict = "at or under" if both <= goal else "over"
    print(f"  after with both: ${both:,.2f}, {verdict} the ${goal:,.0f} goal")


if __name__ == "__main__":
    main()
