"""labkit.lab.readback: the listener and target health read from AWS during a deploy, per step."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from labkit.lab.readback import ListenerWatch, steps_table
from labkit.target import Target


class Clock:
    """Stands in for the probe: only its clock is read."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def stack(target: Target) -> dict[str, Any]:
    ec2, elb = target.client("ec2"), target.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in enumerate("ab")
    ]
    lb = elb.create_load_balancer(Name="watch", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {
        color: elb.create_target_group(Name=f"watch-{color}", Protocol="HTTP", Port=8080, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for color in ("blue", "green")
    }
    forward = [
        {"TargetGroupArn": groups["blue"], "Weight": 90},
        {"TargetGroupArn": groups["green"], "Weight": 10},
    ]
    listener = elb.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": forward}}],
    )["Listeners"][0]["ListenerArn"]
    return {"listener_arn": listener, **{f"{c}_target_group_arn": arn for c, arn in groups.items()}}


def test_the_watch_reads_the_weights_aws_reports_on_the_probes_clock(moto_target: Target) -> None:
    outputs = stack(moto_target)
    with ListenerWatch(moto_target, outputs, Clock(), every_s=0.1) as watch:  # type: ignore[arg-type]
        time.sleep(0.5)
    samples = watch.samples()
    assert len(samples) >= 3 and watch.missed == 0
    assert samples["time_s"].is_monotonic_increasing and samples["time_s"].iloc[0] < 0.5
    assert set(samples["blue_weight"]) == {90.0} and set(samples["green_weight"]) == {10.0}
    assert set(samples["green_healthy"]) == {0.0}  # no targets registered


def test_each_step_has_what_aws_said_last_and_what_the_probe_saw() -> None:
    marks = [(0.0, "start"), (1.0, "provision"), (5.0, "shift-10"), (6.0, "analysis-10"),
             (10.0, "shift-100"), (11.0, "analysis-100"), (15.0, "scale-down")]  # fmt: skip
    samples = pd.DataFrame(
        [
            (6.5, 100, 0, 2, 2),  # the listener read moments before the shift shows
            (9.5, 90, 10, 2, 2),
            (14.5, 0, 100, 0, 2),
        ],
        columns=["time_s", "blue_weight", "green_weight", "blue_healthy", "green_healthy"],
    )
    answers = [(6.2 + i * 0.1, "green" if i % 10 == 0 else "blue", True) for i in range(30)]
    answers += [(11.2 + i * 0.1, "green", True) for i in range(30)] + [(12.0, "green", False)]
    traffic = pd.DataFrame(answers, columns=["elapsed_s", "color", "ok"])
    table = steps_table(samples, traffic, marks, "green")
    assert table["step"].tolist() == ["green 10%", "green 100%"]
    assert table["AWS: green weight"].tolist() == [10, 100]
    assert table["AWS: blue healthy"].tolist() == [2, 0]
    assert table["probe: answers"].tolist() == [30, 30]  # the failed answer is not an answer
    assert table["probe: share on green (%)"].tolist() == [10.0, 100.0]
