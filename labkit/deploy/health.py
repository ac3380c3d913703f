"""Waiting for a color's new instances to turn healthy behind the load balancer.

The instances are the ones the color's ASG (named by the stack's ``<color>_asg_name`` output) holds;
their state comes from ``describe_target_health`` of the color's target group. Targets of an ASG
being replaced (draining) are not waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from labkit.errors import DeployError, StackError
from labkit.target import Target

POLL_S = 1.0
#: A progress line at least this often while waiting.
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class HealthReport:
    """The new instances and the state of each in the target group (``missing`` when unregistered)."""

    wanted: int
    states: dict[str, tuple[str, str | None]]  # instance id -> (state, reason)

    @property
    def healthy(self) -> int:
        return sum(1 for state, _ in self.states.values() if state == "healthy")

    @property
    def ready(self) -> bool:
        return len(self.states) >= self.wanted and self.healthy == len(self.states)

    @property
    def unhealthy(self) -> list[str]:
        """The instances found unhealthy (not those still ``initial``), sorted."""
        return sorted(i for i, (state, _reason) in self.states.items() if state == "unhealthy")

    def describe(self) -> str:
        listed = ", ".join(
            f"{i} {state}" + (f" ({reason})" if reason else "") for i, (state, reason) in self.states.items()
        )
        return f"{self.healthy}/{self.wanted} healthy" + (f": {listed}" if listed else ": no instances yet")


@dataclass(frozen=True)
class Fleet:
    """One color's Auto Scaling group, its target group and how many instances it keeps."""

    color: str
    asg_name: str
    target_group_arn: str
    capacity: int

    def check(self, target: Target) -> HealthReport:
        """One look at the fleet's instances in its target group."""
        return check(
            target, asg_name=self.asg_name, target_group_arn=self.target_group_arn, wanted=self.capacity
        )


def fleets(outputs: Mapping[str, Any]) -> list[Fleet]:
    """The colors that have capacity, from an environment's outputs."""
    deployment = outputs.get("deployment") or {}
    return [
        Fleet(color, str(outputs[f"{color}_asg_name"]), str(outputs[f"{color}_target_group_arn"]), capacity)
        for color in ("blue", "green")
        if (capacity := int(deployment.get(f"{color}_capacity") or 0)) and f"{color}_asg_name" in outputs
    ]


def check(target: Target, *, asg_name: str, target_group_arn: str, wanted: int) -> HealthReport:
    """One look at the ASG's instances in the target group."""
    try:
        groups = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])
        described = target.client("elbv2").describe_target_health(TargetGroupArn=target_group_arn)
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(
            f"Could not read the health of {asg_name}'s instances: {exc}",
            hint="Check that the target is reachable (`labkit doctor`).",
        ) from exc
    instances: list[Any] = [
        i["InstanceId"]
        for g in groups["AutoScalingGroups"]
        for i in g["Instances"]
        if i.get("LifecycleState") not in ("Terminating", "Terminated")
    ]
    health = {
        d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
        for d in described["TargetHealthDescriptions"]
    }
    return HealthReport(wanted=wanted, states={i: health.get(i, ("missing", None)) for i in instances})


def wait_healthy(
    target: Target,
    *,
    asg_name: str,
    target_group_arn: str,
    wanted: int,
    timeout_s: float,
    say: Callable[[str], None],
) -> tuple[bool, HealthReport, float]:
    """Poll until ``wanted`` instances of ``asg_name`` are all healthy, or ``timeout_s`` passes.

    Returns (healthy in time, the last report, seconds waited).
    """
    start = time.monotonic()
    last_said = start
    while True:
        report = check(target, asg_name=asg_name, target_group_arn=target_group_arn, wanted=wanted)
        waited = time.monotonic() - start
        if report.ready:
            return True, report, waited
        if waited >= timeout_s:
            return False, report, waited
        if time.monotonic() - last_said >= PROGRESS_EVERY_S:
            say(f"  waiting for {asg_name}: {report.describe()} ({waited:.0f}/{timeout_s:g} s)")
            last_said = time.monotonic()
        time.sleep(min(POLL_S, max(0.0, timeout_s - waited)))


def wait_for_fleets(
    chosen: Target, outputs: dict[str, Any], *, timeout_s: float, say: Callable[[str], None]
) -> None:
    """Wait until each color with capacity has that many healthy instances in its target group;
    StackError naming the fleet and its instances' states when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    for fleet in fleets(outputs):
        ok, report, waited = wait_healthy(
            chosen,
            asg_name=fleet.asg_name,
            target_group_arn=fleet.target_group_arn,
            wanted=fleet.capacity,
            timeout_s=max(0.0, deadline - time.monotonic()),
            say=say,
        )
        say(f"{fleet.color}: {report.describe()} after {waited:.0f} s")
        if not ok:
            raise StackError(
                f"The apply is done, but {fleet.color}'s fleet is not healthy after {timeout_s:g} s: "
                f"{report.describe()}.",
                hint="See why the instances fail (`labkit sandbox logs` on the sandbox, the instances' "
                "console output on AWS); `labkit stack apply ENV --wait-timeout S` waits longer.",
            )
    say("")
