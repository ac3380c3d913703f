"""Staging's monthly cost with the database, against the roadmap's $50, before and after the cost levers.

Every figure is :func:`labkit.infra.cost.estimate_cost` on a real Terraform plan of staging from
scratch (``Stack.plan_from_scratch``) with the database on (``enable_database``; the project's KMS
key, which global makes and pays for, named by its alias), plus the blue/green overhead of
``--deploys`` deploys a month keeping the idle color up ``--hours`` each. The plans run against
moto's server in this process with labkit's mends, as ``bench/stack_build.py --engine moto`` does:
nothing is applied and no sandbox is needed. Prices are the dated list prices of
``labkit/infra/cost/data/prices.json``, not live ones.

Plans, each with blue serving on its capacity and green parked:

- ``before``: staging as it was before the levers, set back with variables (2 x t3.micro on demand
  per color, each instance with a public IPv4 address in a public subnet, no NAT gateway, a
  dashboard, the alarm topic on a key of its own);
- one plan per lever alone, against ``before``: each of staging's own settings
  (``terraform/environments/staging/main.tf``), one instance per color (``blue_capacity = 1``), and
  for comparison instances without public IPv4 in private subnets behind a NAT gateway;
- ``after``: staging's own settings with one instance per color: what ``labkit stack apply staging
  --var enable_database=true --var blue_capacity=1 ...`` builds.

    .venv/bin/python bench/cost.py [--deploys 20] [--hours 0.5]

Takes about a minute: eight plans of 3-5 s each.
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
    estimate_cost,
)
from labkit.target import Target

#: Blue serves on two instances, green is parked: the deployment lessons build staging with.
DEPLOYMENT = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 2, "green_capacity": 0}
#: Staging before its cost settings: each of them set back with the variable that overrides it.
BEFORE: dict[str, Any] = {
    "instance_type": "t3.micro",
    "spot_instances": False,
    "enable_dashboard": True,
    "alarm_topic_on_project_key": False,
}
LEVERS: dict[str, dict[str, Any]] = {
    "Graviton: t4g.micro instead of t3.micro": {"instance_type": "t4g.micro"},
    "spot capacity for both colors": {"spot_instances": True},
    "one instance per color instead of two": {"blue_capacity": 1},
    "no CloudWatch dashboard": {"enable_dashboard": False},
    "alarm topic on the project's KMS key": {"alarm_topic_on_project_key": True},
    "no public IPv4 on instances (private subnets + NAT)": {"enable_private_subnets": True},
}
#: Staging's own settings (no override) with one instance per color.
AFTER: dict[str, Any] = {"blue_capacity": 1}


def plan_priced(target: Target, variables: dict[str, Any], pattern: DeployPattern) -> CostEstimate:
    from labkit.infra.stack import Stack

    started = time.monotonic()
    plan = Stack("staging", target, reporter=None).plan_from_scratch({**DEPLOYMENT, **variables})
    estimate = estimate_cost(plan.raw, deploys=pattern)
    print(f"    planned {variables or 'defaults'} in {time.monotonic() - started:.0f} s", flush=True)
    if not estimate.complete:
        raise SystemExit("NOT PRICED: " + ", ".join(estimate.unpriced["address"]))
    return estimate


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
            database = {"enable_database": True}
            print("... planning staging with the database", flush=True)
            before = plan_priced(target, {**database, **BEFORE}, pattern)
            levers = {
                name: plan_priced(target, {**database, **BEFORE, **v}, pattern) for name, v in LEVERS.items()
            }
            after = plan_priced(target, {**database, **AFTER}, pattern)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    goal = MONTHLY_GOAL_USD
    print(
        f"\nStaging with the database, per month, {args.deploys:g} deploys of {args.hours:g} h "
        f"({before.prices.region} list prices as of {before.prices.as_of}; "
        f"the RDS entries as of {before.prices['rds.backup.gb-month'].as_of})"
    )
    print(
        f"\nBEFORE (staging before its cost settings: {', '.join(f'{k}={v}' for k, v in BEFORE.items())}): "
        f"${before.total_usd:,.2f}, {before.against_goal()}"
    )
    share = database_share(before)
    print(f"  the database's share: ${share.sum():,.2f}")
    for price_key, usd in share.items():
        print(f"    {price_key:<38} ${usd:>7,.2f}")

    print("\nLEVERS, each alone against before (a negative change saves):")
    for name, estimate in levers.items():
        print(
            f"  {name:<58} {estimate.total_usd - before.total_usd:>+8.2f}  (plan: ${estimate.total_usd:,.2f})"
        )
    print(
        f"\nAFTER (staging's own settings: t4g.micro on spot, no dashboard, the alarm topic on the "
        f"project's key; and {', '.join(f'{k}={v}' for k, v in AFTER.items())}): ${after.total_usd:,.2f}"
    )
    show(before, after)
    print(f"\n{after.against_goal(goal)}")

    items = after.items
    fleet = items["resource_type"] == "aws_autoscaling_group"
    rest = items[~fleet].groupby("component")["monthly_usd"].sum().sort_values(ascending=False)
    print(
        f"\nWhat no fleet setting touches: ${rest.sum():,.2f} ("
        + ", ".join(f"{name} ${usd:,.2f}" for name, usd in rest.items())
        + ")"
    )


if __name__ == "__main__":
    main()
