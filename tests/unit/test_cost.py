"""labkit.infra.cost: the price table, the plan/state model and the blue/green overhead.

The fixtures under tests/fixtures/cost/ were written by real Terraform (see regenerate.py there): a plan of
a small staging-like stack, the state after applying it to moto, and a plan with the billable resources
staging lacks plus one type the table does not know.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from labkit.errors import CostError
from labkit.infra.cost import (
    Assumptions,
    CostEstimate,
    DeployPattern,
    PriceTable,
    blue_green_overhead,
    estimate_cost,
    price_table,
)
from labkit.infra.cost.pricers import ITEM_COLUMNS, OVERHEAD_COMPONENT

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cost"
STAGING_PLAN = FIXTURES / "staging.plan.json"
BLUE_ASG = 'module.fleet["blue"].aws_autoscaling_group.this'
GREEN_ASG = 'module.fleet["green"].aws_autoscaling_group.this'


def rows(estimate: CostEstimate) -> set[tuple[str, str, float]]:
    return {(r.address, r.price_key, round(r.quantity, 6)) for r in estimate.items.itertuples()}


# -- the price table ------------------------------------------------------------------------


def test_price_table_entries_are_dated_sourced_and_positive() -> None:
    table = price_table()
    assert table.region == "us-east-1"
    assert "NOT fetched live" in table.note and "re-read" in table.note
    for price in table.prices.values():
        assert price.usd > 0, price.key
        assert price.source.startswith("https://aws.amazon.com/"), price.key
        date.fromisoformat(price.as_of)
        assert price.unit and price.usage and price.service, price.key


@pytest.mark.parametrize(
    "key",
    [
        "ec2.on-demand.t3.micro",
        "ec2.on-demand.t3.small",
        "ec2.on-demand.t4g.micro",
        "ec2.spot.t3.micro",
        "ec2.spot.t3.small",
        "ec2.spot.t4g.micro",
        "elb.alb.hour",
        "elb.alb.lcu-hour",
        "vpc.nat-gateway.hour",
        "vpc.nat-gateway.gb",
        "ebs.gp3.gb-month",
        "s3.standard.gb-month",
        "s3.standard.put-1k",
        "s3.standard.get-1k",
        "dynamodb.on-demand.read-1m",
        "dynamodb.on-demand.write-1m",
        "dynamodb.storage.gb-month",
        "kms.key-month",
        "kms.requests-10k",
        "secretsmanager.secret-month",
        "cloudwatch.alarm.standard",
        "rds.postgres.single-az.db.t4g.micro",
        "rds.storage.gp3.single-az.gb-month",
        "rds.backup.gb-month",
        "cloudwatch.dashboard.month",
        "transfer.out.internet-gb",
    ],
)
def test_price_table_covers_the_stack(key: str) -> None:
    assert key in price_table()


def test_price_table_age_and_frame() -> None:
    table = price_table()
    assert table.age_days(date.fromisoformat(table.as_of)) == 0
    assert table.age_days(date(2026, 11, 26)) == (date(2026, 11, 26) - date.fromisoformat(table.as_of)).days
    frame = table.frame()
    assert set(frame.columns) >= {"key", "service", "usage", "unit", "usd", "source", "as_of"}
    assert len(frame) == len(table.prices)


def test_missing_price_entry_says_what_exists() -> None:
    with pytest.raises(CostError, match=re.escape("no entry 'ec2.on-demand.m5.large'")) as info:
        price_table()["ec2.on-demand.m5.large"]
    assert "ec2.on-demand.t3.micro" in str(info.value) and "prices.json" in str(info.value)


def test_broken_price_table_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"region": "us-east-1", "as_of": "2025-01-01", "note": "", "prices": [{"key": "x"}]})
    )
    with pytest.raises(CostError, match="cannot be read"):
        PriceTable.load(path)


# -- the staging plan ---------------------------------------------------------------------------


def test_staging_plan_line_items() -> None:
    estimate = estimate_cost(STAGING_PLAN)
    assert list(estimate.items.columns) == ITEM_COLUMNS
    assert estimate.source_kind == "plan" and estimate.complete
    assert rows(estimate) == {
        ("aws_lb.this", "elb.alb.hour", 730.0),
        ("aws_lb.this", "elb.alb.lcu-hour", 36.5),  # 0.05 LCU (the GB/h dimension) x 730 h
        ("aws_lb.this", "vpc.public-ipv4.hour", 1460.0),  # 2 subnets, counted through the configuration
        (BLUE_ASG, "ec2.on-demand.t3.micro", 1460.0),  # desired 2 x 730 h
        (BLUE_ASG, "ebs.gp3.gb-month", 16.0),  # 2 x 8 GB from the launch template
        (GREEN_ASG, "ec2.on-demand.t3.micro", 0.0),  # the idle color at 0
        (GREEN_ASG, "ebs.gp3.gb-month", 0.0),
        ("aws_s3_bucket.artifacts", "s3.standard.gb-month", 1.0),
        ("aws_s3_bucket.artifacts", "s3.standard.put-1k", 10.0),
        ("aws_s3_bucket.artifacts", "s3.standard.get-1k", 100.0),
        ("aws_dynamodb_table.ledger", "dynamodb.on-demand.read-1m", 1.0),
        ("aws_dynamodb_table.ledger", "dynamodb.on-demand.write-1m", 0.1),
        ("aws_dynamodb_table.ledger", "dynamodb.storage.gb-month", 0.1),
        ("aws_kms_key.this", "kms.key-month", 1.0),
        ("aws_kms_key.this", "kms.requests-10k", 1.0),
        ('aws_cloudwatch_metric_alarm.target_5xx["blue"]', "cloudwatch.alarm.standard", 1.0),
        ('aws_cloudwatch_metric_alarm.target_5xx["green"]', "cloudwatch.alarm.standard", 1.0),
        ("aws_cloudwatch_dashboard.this", "cloudwatch.dashboard.month", 1.0),
        ("(stack egress to the internet)", "transfer.out.internet-gb", 36.5),
    }


def test_every_figure_traces_to_its_price_entry() -> None:
    estimate = estimate_cost(STAGING_PLAN, deploys=DeployPattern())
    table = price_table()
    for item in estimate.items.itertuples():
        price = table[item.price_key]
        assert item.unit == price.unit and item.unit_price_usd == price.usd
        assert item.monthly_usd == pytest.approx(item.quantity * price.usd)
        assert item.basis and item.component
    assert estimate.total_usd == pytest.approx(float(estimate.items["monthly_usd"].sum()))
    assert estimate.by_component().sum() == pytest.approx(estimate.total_usd)
    # the headline figures, worked by hand from the table: ALB 730 x 0.0225, 2 x t3.micro x 730 h
    by = estimate.by_component()
    assert by["load balancer"] == pytest.approx(730 * 0.0225 + 36.5 * 0.008)
    assert by["EC2 compute (blue)"] == pytest.approx(2 * 730 * 0.0104)
    assert by["EC2 compute (green)"] == 0
    # traced(): each line with the page and date of its price, as the notebooks show it
    traced = estimate.traced()
    assert len(traced) == len(estimate.items)
    for line in traced.itertuples():
        assert line.source == table[line.price_key].source and line.as_of == table[line.price_key].as_of


def test_plan_resolves_the_unknown_launch_template_id_through_references() -> None:
    plan = json.loads(STAGING_PLAN.read_text())
    blue = next(m for m in plan["planned_values"]["root_module"]["child_modules"] if "blue" in m["address"])
    asg = next(r for r in blue["resources"] if r["type"] == "aws_autoscaling_group")
    assert "id" not in asg["values"]["launch_template"][0]  # unknown until apply
    estimate = estimate_cost(plan)
    (fleet,) = [f for f in estimate.fleets if f.address == BLUE_ASG]
    assert (fleet.instance_type, fleet.market, fleet.capacity, fleet.color) == (
        "t3.micro",
        "on-demand",
        2,
        "blue",
    )
    assert fleet.volumes == ((8.0, "gp3"),)
    basis = estimate.items.set_index(["address", "price_key"]).loc[
        (BLUE_ASG, "ec2.on-demand.t3.micro"), "basis"
    ]
    assert 'module.fleet["blue"].aws_launch_template.this' in basis


@pytest.mark.parametrize("name", ["staging.state.json", "staging.show-state.json"])
def test_state_prices_the_same_as_the_plan(name: str) -> None:
    state = estimate_cost(FIXTURES / name)
    assert state.source_kind == ("raw state" if name == "staging.state.json" else "state")
    assert rows(state) == rows(estimate_cost(STAGING_PLAN))


def test_free_resources_are_listed_with_a_reason() -> None:
    free = estimate_cost(STAGING_PLAN).free.set_index("address")["why"]
    for address in [
        "aws_vpc.this",
        "aws_subnet.public[0]",
        "aws_subnet.public[1]",
        "aws_internet_gateway.this",
        "aws_security_group.alb",
        'aws_lb_target_group.color["blue"]',
        'aws_lb_target_group.color["green"]',
        "aws_lb_listener.http",
        'module.fleet["blue"].aws_launch_template.this',
        "aws_s3_bucket_versioning.artifacts",
    ]:
        assert free[address], address
    assert "load balancer" in free["aws_lb_listener.http"]


def test_summary_and_goal() -> None:
    estimate = estimate_cost(STAGING_PLAN, deploys=DeployPattern())
    check = estimate.against_goal()
    assert check.goal_usd == 50 and check.total_usd == pytest.approx(estimate.total_usd)
    assert check.within == (estimate.total_usd <= 50)
    text = estimate.summary()
    assert f"${estimate.total_usd:,.2f}" in text
    assert "list prices as of" in text and "re-read the source pages" in text
    over = estimate.against_goal(10)
    assert not over.within and str(over).endswith(
        f"OVER the $10/month goal by ${estimate.total_usd - 10:,.2f}"
    )


def test_assumptions_drive_the_quantities() -> None:
    assumptions = Assumptions(hours_per_month=744, alb_new_connections_per_s=50, s3_gb_per_bucket=20)
    assert assumptions.alb_lcu_per_hour == 2.0  # 50 new connections/s / 25
    estimate = estimate_cost(STAGING_PLAN, assumptions=assumptions)
    got = {(a, k): q for a, k, q in rows(estimate)}
    assert got[("aws_lb.this", "elb.alb.hour")] == 744
    assert got[("aws_lb.this", "elb.alb.lcu-hour")] == 2 * 744
    assert got[(BLUE_ASG, "ec2.on-demand.t3.micro")] == 2 * 744
    assert got[("aws_s3_bucket.artifacts", "s3.standard.gb-month")] == 20
    frame = Assumptions().frame()
    assert frame["meaning"].str.len().min() > 10 and "hours_per_month" in set(frame["name"])


# -- the blue/green overhead -------------------------------------------------------------------


def test_overhead_from_the_plan() -> None:
    estimate = estimate_cost(STAGING_PLAN, deploys=DeployPattern(deploys_per_month=30, hours_per_deploy=0.25))
    overhead = estimate.items[estimate.items["component"] == OVERHEAD_COMPONENT]
    assert rows_of(overhead) == {
        # the idle green color runs at blue's capacity (2) for 0.25 h x 30 deploys
        (GREEN_ASG, "ec2.on-demand.t3.micro", 15.0),
        (GREEN_ASG, "ebs.gp3.gb-month", round(2 * 8 * 7.5 / 730, 6)),
    }
    assert estimate.overhead_usd == pytest.approx(15 * 0.0104 + 2 * 8 * 7.5 / 730 * 0.08)
    base = estimate_cost(STAGING_PLAN)
    assert estimate.total_usd == pytest.approx(base.total_usd + estimate.overhead_usd)


def rows_of(frame: pd.DataFrame) -> set[tuple[str, str, float]]:
    return {(r.address, r.price_key, round(r.quantity, 6)) for r in frame.itertuples()}


def test_blue_green_overhead_formula() -> None:
    frame = blue_green_overhead(
        instance_type="t4g.micro",
        capacity=3,
        pattern=DeployPattern(deploys_per_month=10, hours_per_deploy=1.5),
        market="spot",
        volumes=[(10.0, "gp3")],
    )
    compute = frame[frame["price_key"] == "ec2.spot.t4g.micro"].iloc[0]
    assert compute["quantity"] == 3 * 1.5 * 10
    assert compute["monthly_usd"] == pytest.approx(3 * price_table()["ec2.spot.t4g.micro"].usd * 1.5 * 10)
    assert compute["basis"] == "3 instance(s) x 1.5 h per deploy x 10 deploys a month"
    assert set(frame["component"]) == {OVERHEAD_COMPONENT}
    with pytest.raises(CostError, match="must not be negative"):
        blue_green_overhead(instance_type="t3.micro", capacity=-1)
    with pytest.raises(CostError, match=re.escape("no entry 'ec2.on-demand.x9.huge'")):
        blue_green_overhead(instance_type="x9.huge", capacity=1)


def test_overhead_needs_a_blue_and_a_green_fleet() -> None:
    with pytest.raises(CostError, match="needs one blue and one green auto scaling group") as info:
        estimate_cost(FIXTURES / "extras.plan.json", deploys=DeployPattern())
    assert "aws_autoscaling_group.spot (no color)" in str(info.value)
    assert "blue_green_overhead()" in str(info.value)


# -- the other billable resources ---------------------------------------------------------------


def test_extras_plan() -> None:
    estimate = estimate_cost(FIXTURES / "extras.plan.json")
    assert rows(estimate) == {
        ("aws_autoscaling_group.spot", "ec2.spot.t3.small", 3 * 730.0),  # template found by name
        ("aws_autoscaling_group.spot", "ebs.gp3.gb-month", 24.0),  # 3 x the assumed 8 GB root volume
        ("aws_instance.bastion", "ec2.on-demand.t4g.micro", 730.0),
        ("aws_instance.bastion", "ebs.gp3.gb-month", 10.0),
        ("aws_ebs_volume.data", "ebs.gp3.gb-month", 20.0),
        ("aws_nat_gateway.this", "vpc.nat-gateway.hour", 730.0),
        ("aws_nat_gateway.this", "vpc.nat-gateway.gb", 10.0),
        ("aws_eip.nat", "vpc.public-ipv4.hour", 730.0),
        ("aws_secretsmanager_secret.db", "secretsmanager.secret-month", 1.0),
        ("aws_secretsmanager_secret.db", "secretsmanager.api-10k", 1.0),
        ("aws_dynamodb_table.provisioned", "dynamodb.provisioned.rcu-hour", 5 * 730.0),
        ("aws_dynamodb_table.provisioned", "dynamodb.provisioned.wcu-hour", 2 * 730.0),
        ("aws_dynamodb_table.provisioned", "dynamodb.storage.gb-month", 0.1),
        ("aws_cloudwatch_log_group.app", "cloudwatch.logs.ingest-gb", 1.0),
        ("aws_cloudwatch_log_group.app", "cloudwatch.logs.storage-gb-month", 1.0),
        ("(stack egress to the internet)", "transfer.out.internet-gb", 36.5),
    }
    # the SQS queue is not in the table: listed as unpriced, and the summary says so
    assert not estimate.complete
    assert estimate.unpriced.to_dict("records") == [
        {
            "address": "aws_sqs_queue.events",
            "resource_type": "aws_sqs_queue",
            "reason": "no price mapping for this resource type; add one to labkit/infra/cost/pricers.py",
        }
    ]
    assert "NOT PRICED (1): aws_sqs_queue.events" in estimate.summary()


def plan_of(*resources: dict[str, Any], child_modules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A plan document in the shape `terraform show -json` writes, with only what the model reads."""
    return {
        "format_version": "1.2",
        "planned_values": {
            "root_module": {"resources": list(resources), "child_modules": child_modules or []}
        },
        "configuration": {"root_module": {}},
    }


def resource(
    rtype: str,
    name: str,
    values: dict[str, Any],
    *,
    module: str = "",
    mode: str = "managed",
    index: Any = None,
) -> dict[str, Any]:
    suffix = "" if index is None else (f"[{index}]" if isinstance(index, int) else f'["{index}"]')
    local = f"{rtype}.{name}{suffix}" if mode == "managed" else f"data.{rtype}.{name}"
    return {
        "address": f"{module}.{local}" if module else local,
        "mode": mode,
        "type": rtype,
        "name": name,
        "values": values,
    }


def test_edge_cases_in_a_hand_written_plan() -> None:
    doc = plan_of(
        resource("aws_lb", "internal", {"load_balancer_type": "application", "internal": True}),
        resource("aws_lb", "nlb", {"load_balancer_type": "network", "internal": False}),
        resource("aws_lb", "public", {"load_balancer_type": "application", "internal": False}),
        resource(
            "aws_cloudwatch_metric_alarm",
            "math",
            {
                "metric_query": [
                    {"id": "e1", "expression": "m1/m2", "metric": []},
                    {"id": "m1", "metric": [{"metric_name": "A", "period": 10}]},
                    {"id": "m2", "metric": [{"metric_name": "B", "period": 10}]},
                ]
            },
        ),
        resource("aws_ebs_volume", "fast", {"size": 100, "type": "gp3", "iops": 6000, "throughput": 125}),
        resource("aws_ebs_volume", "io", {"size": 100, "type": "io2"}),
        resource("aws_instance", "big", {"instance_type": "m5.large"}),
        resource(
            "aws_autoscaling_group", "orphan", {"desired_capacity": 1, "launch_template": [{"id": "lt-x"}]}
        ),
        resource("random_id", "suffix", {}),
        resource("aws_ami", "al2023", {}, mode="data"),
        child_modules=[
            {
                "address": "module.net",
                "resources": [
                    resource("aws_nat_gateway", "this", {}, module="module.net", index=0),
                ],
            }
        ],
    )
    estimate = estimate_cost(doc)
    got = rows(estimate)
    assert ("aws_lb.internal", "elb.alb.hour", 730.0) in got
    assert not any(a == "aws_lb.internal" and k == "vpc.public-ipv4.hour" for a, k, _ in got)
    # subnets unknown and no configuration to count them: the documented assumption (2) is used
    public_ips = estimate.items.set_index(["address", "price_key"]).loc[
        ("aws_lb.public", "vpc.public-ipv4.hour")
    ]
    assert public_ips["quantity"] == 2 * 730 and "assumed: subnets unknown" in public_ips["basis"]
    assert ("aws_cloudwatch_metric_alarm.math", "cloudwatch.alarm.high-resolution", 2.0) in got
    assert ("aws_ebs_volume.fast", "ebs.gp3.gb-month", 100.0) in got
    assert ("module.net.aws_nat_gateway.this[0]", "vpc.nat-gateway.hour", 730.0) in got
    reasons = dict(zip(estimate.unpriced["address"], estimate.unpriced["reason"], strict=True))
    assert reasons == {
        "aws_lb.nlb": "network load balancers are not in the price table (only application)",
        "aws_ebs_volume.fast": reasons["aws_ebs_volume.fast"],
        "aws_ebs_volume.io": "EBS volume type io2 is not in the price table",
        "aws_instance.big": "instance type m5.large (on-demand) is not in the price table; add "
        "ec2.on-demand.m5.large to labkit/infra/cost/data/prices.json",
        "aws_autoscaling_group.orphan": reasons["aws_autoscaling_group.orphan"],
    }
    assert "6000" in reasons["aws_ebs_volume.fast"] and "3,000 IOPS" in reasons["aws_ebs_volume.fast"]
    assert "launch template could not be found" in reasons["aws_autoscaling_group.orphan"]
    free = dict(zip(estimate.free["address"], estimate.free["why"], strict=True))
    assert free == {"random_id.suffix": "not an AWS resource (provider random)"}


def test_bad_input() -> None:
    with pytest.raises(CostError, match="neither a Terraform plan nor a state"):
        estimate_cost({"hello": "world"})
    with pytest.raises(CostError, match="cannot be read as JSON"):
        estimate_cost(FIXTURES / "staging" / "main.tf")
    with pytest.raises(CostError, match="cannot be read as JSON"):
        estimate_cost(FIXTURES / "missing.json")


def test_plan_with_a_fully_unknown_launch_template_block() -> None:
    # `launch_template { id = ...this.id, version = ...this.latest_version }` (the lab's fleet module) leaves
    # the whole block unknown in a plan: Terraform writes it as [{}]
    plan = json.loads(STAGING_PLAN.read_text())
    for module in plan["planned_values"]["root_module"]["child_modules"]:
        for res in module["resources"]:
            if res["type"] == "aws_autoscaling_group":
                res["values"]["launch_template"] = [{}]
    assert rows(estimate_cost(plan)) == rows(estimate_cost(STAGING_PLAN))


def test_public_ipv4_of_instances_and_the_overhead() -> None:
    template = {
        "name": "lt",
        "instance_type": "t3.micro",
        "network_interfaces": [{"associate_public_ip_address": "true"}],
    }
    doc = plan_of(
        resource("aws_launch_template", "blue", {**template, "name": "lt-blue"}),
        resource("aws_launch_template", "green", {**template, "name": "lt-green"}),
        resource(
            "aws_autoscaling_group", "blue", {"desired_capacity": 3, "launch_template": [{"name": "lt-blue"}]}
        ),
        resource(
            "aws_autoscaling_group",
            "green",
            {"desired_capacity": 0, "launch_template": [{"name": "lt-green"}]},
        ),
    )
    estimate = estimate_cost(doc, deploys=DeployPattern(deploys_per_month=10, hours_per_deploy=1))
    got = rows(estimate)
    assert ("aws_autoscaling_group.blue", "vpc.public-ipv4.hour", 3 * 730.0) in got
    assert ("aws_autoscaling_group.green", "vpc.public-ipv4.hour", 0.0) in got
    overhead = estimate.items[estimate.items["component"] == OVERHEAD_COMPONENT]
    assert rows_of(overhead) == {
        ("aws_autoscaling_group.green", "ec2.on-demand.t3.micro", 30.0),
        ("aws_autoscaling_group.green", "ebs.gp3.gb-month", round(3 * 8 * 10 / 730, 6)),  # assumed 8 GB root
        ("aws_autoscaling_group.green", "vpc.public-ipv4.hour", 30.0),
    }


# -- the database ----------------------------------------------------------------------------------

#: What `terraform show -json` plans for module database's instance in staging (the values the model
#: reads, as in a real plan of staging with enable_database).
DB_VALUES: dict[str, Any] = {
    "engine": "postgres",
    "engine_version": "16",
    "instance_class": "db.t4g.micro",
    "multi_az": False,
    "allocated_storage": 20,
    "max_allocated_storage": 100,
    "storage_type": "gp3",
    "backup_retention_period": 7,
    "manage_master_user_password": True,
    "monitoring_interval": 0,
}
DB = "module.database.aws_db_instance.this"


def database_plan(**values: Any) -> dict[str, Any]:
    return plan_of(
        child_modules=[
            {
                "address": "module.database",
                "resources": [
                    resource("aws_db_instance", "this", {**DB_VALUES, **values}, module="module.database"),
                    resource("aws_db_subnet_group", "this", {}, module="module.database"),
                    resource("aws_secretsmanager_secret_rotation", "master", {}, module="module.database"),
                ],
            }
        ]
    )


def test_database_instance_storage_backups_and_secret() -> None:
    assume = Assumptions(rds_backup_gb=50.0)
    estimate = estimate_cost(database_plan(), assumptions=assume)
    assert estimate.complete
    assert rows(estimate) == {
        (DB, "rds.postgres.single-az.db.t4g.micro", assume.hours_per_month),
        (DB, "rds.storage.gp3.single-az.gb-month", 20.0),  # allocated, not the autoscaling ceiling
        (DB, "rds.backup.gb-month", 30.0),  # 50 GB of backups less 20 GB free
        (DB, "secretsmanager.secret-month", 1.0),  # the master user's secret, which RDS manages
        (DB, "secretsmanager.api-10k", assume.secrets_api_calls_per_month / 10_000),
    }
    table = price_table()
    by = estimate.by_component()
    assert by["RDS database"] == pytest.approx(
        730 * table["rds.postgres.single-az.db.t4g.micro"].usd
        + 20 * table["rds.storage.gp3.single-az.gb-month"].usd
        + 30 * table["rds.backup.gb-month"].usd
    )
    assert by["Secrets Manager"] == pytest.approx(
        table["secretsmanager.secret-month"].usd + table["secretsmanager.api-10k"].usd
    )
    free = dict(zip(estimate.free["address"], estimate.free["resource_type"], strict=True))
    assert free == {
        "module.database.aws_db_subnet_group.this": "aws_db_subnet_group",
        "module.database.aws_secretsmanager_secret_rotation.master": "aws_secretsmanager_secret_rotation",
    }


def test_database_backups_within_the_allowance_cost_nothing() -> None:
    # the default assumption: a lab database's backups stay under its allocated storage
    estimate = estimate_cost(database_plan(allocated_storage=40))
    backups = estimate.items.set_index("price_key").loc["rds.backup.gb-month"]
    assert backups["quantity"] == max(0.0, Assumptions().rds_backup_gb - 40) == 0
    assert "less 40 GB free" in backups["basis"]
    # unknown in a plan: RDS keeps a day by default, so backups are priced, not left out
    unknown = estimate_cost(database_plan(backup_retention_period=None)).items.set_index("price_key")
    assert "RDS's default retention" in unknown.loc["rds.backup.gb-month", "basis"]


def test_database_multi_az_no_backups_no_managed_secret() -> None:
    estimate = estimate_cost(
        database_plan(
            multi_az=True, backup_retention_period=0, manage_master_user_password=False, allocated_storage=50
        )
    )
    assert rows(estimate) == {
        (DB, "rds.postgres.multi-az.db.t4g.micro", 730.0),
        (DB, "rds.storage.gp3.multi-az.gb-month", 50.0),
    }
    table = price_table()
    single = estimate_cost(database_plan(allocated_storage=50)).by_component()["RDS database"]
    # Multi-AZ bills a standby: instance and storage twice what Single-AZ costs in the table
    multi, one = (table[f"rds.postgres.{d}.db.t4g.micro"].usd for d in ("multi-az", "single-az"))
    assert multi == 2 * one
    assert estimate.total_usd == pytest.approx(single * 2)


def test_database_that_the_table_cannot_price_is_reported() -> None:
    estimate = estimate_cost(database_plan(instance_class="db.r7g.large"))
    (reason,) = estimate.unpriced["reason"]
    assert "db.r7g.large" in reason and "rds.postgres.single-az.db.r7g.large" in reason
    assert not len(estimate.items)
    partly = estimate_cost(database_plan(storage_type="io2", monitoring_interval=60))
    reasons = list(partly.unpriced["reason"])
    assert reasons == [
        "RDS storage type io2 is not in the price table",
        "enhanced monitoring's CloudWatch Logs charges are not in the price table",
    ]
    assert (DB, "rds.postgres.single-az.db.t4g.micro", 730.0) in rows(partly)
