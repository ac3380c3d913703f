"""Drill ``quota``: the account's vCPU quota leaves no room, and the blue fleet is scaled up with
``labkit stack apply`` (one more instance): the apply succeeds, Auto Scaling's launch fails in the
group's scaling activities, as on AWS (``VcpuLimitExceeded`` on demand; "Max spot instance count
exceeded" for a fleet on spot capacity, as staging's is). ``quota-check`` finds the fleet held back
and requests the increase through Service Quotas. The quota lowered is the one the fleet's
launches count toward (:func:`labkit.infra.quotas.vcpu_quota` of its launch template's market).

The quota is lowered to the vCPUs in use through the sandbox's control path (AWS has no API that
lowers a quota: in life the account simply has too few). The runbook is asked to request the value
the account had before the drill, so that the sandbox is left as roomy as it was; its own
recommendation (:func:`labkit.ops.quotas.vcpus_needed`) shows in its plan when it runs alone.
The bigger fleet stays: it is now the deployment's ``blue_capacity``, so a plan shows no changes.
"""

from __future__ import annotations

import time
from typing import Any

from labkit import sandbox
from labkit.errors import DrillError
from labkit.infra import quotas
from labkit.infra.stack import Stack
from labkit.ops import quotas as quota_check
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target

#: How long the injection waits for Auto Scaling to record the failed launch.
DETECT_TIMEOUT_S = 30.0


def inject(target: Target, environment: str, *, color: str = "blue", extra: int = 1) -> dict[str, Any]:
    """Lower the fleet's vCPU quota to what runs, apply ``color``'s capacity plus ``extra``; the facts."""
    stack = Stack(environment, target, reporter=None)
    capacity = int(stack.deployment().get(f"{color}_capacity") or 0)
    group = str(stack.outputs()[f"{color}_asg_name"])
    described = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    quota = quotas.vcpu_quota(quota_check.launch_shape(target, described["AutoScalingGroups"][0])[1])
    in_use = quotas.current_usage(target)[quota.code]
    before = sandbox.set_quota(target, quota.code, in_use)
    try:
        stack.apply({f"{color}_capacity": capacity + extra})
        activity = _wait_for_failed_launch(target, group)
    except Exception:
        sandbox.set_quota(target, quota.code, before)  # leave the account as it was
        raise
    return {
        "quota_code": quota.code,
        "value_before": before,
        "value": in_use,
        "group": group,
        "capacity_before": capacity,
        "capacity": capacity + extra,
        "activity": activity,
    }


def _wait_for_failed_launch(target: Target, group: str) -> str:
    deadline = time.monotonic() + DETECT_TIMEOUT_S
    while time.monotonic() < deadline:
        held = quota_check.held_back(target, [group])
        if held:
            return held[0].reason
        time.sleep(0.5)
    raise DrillError(
        f"Auto Scaling recorded no failed launch for {group} within {DETECT_TIMEOUT_S:g} s.",
        hint="Does the sandbox enforce quotas? `labkit sandbox logs` shows its launches.",
    )


def fleets_at_capacity(target: Target, environment: str) -> Check:
    """Every fleet of the environment runs its desired capacity (read from Auto Scaling)."""
    return quota_check.verify_fleets(target, Stack(environment, target, reporter=None), timeout_s=0)


DRILL = Drill(
    name="quota",
    summary="a fleet scaled past the account's vCPU quota",
    inject=inject,
    runbook="quota-check",
    checks={"fleets-at-capacity": fleets_at_capacity},
    runbook_parameters=lambda facts: {"vcpus": facts["value_before"]},
)
