"""Checks no runbook wrote: the steady state every drill verifies before and after.

Each check is ``check(target, environment) -> (ok, detail)`` and only reads. A drill (see
:mod:`labkit.ops.drill`) runs them as its Chaos Toolkit steady-state hypothesis, together with the
drill's own checks.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from botocore.exceptions import ClientError

from labkit.deploy.ledger import Ledger
from labkit.infra.stack import Stack, StackNames
from labkit.target import Target

Check = tuple[bool, str]


def alb_serves(target: Target, environment: str, *, attempts: int = 5) -> Check:
    """The environment's ALB answers ``GET /`` with 200 (one of ``attempts`` tries)."""
    try:
        url = target.alb_url(str(Stack(environment, target).outputs()["alb_dns_name"]))
    except KeyError:
        return False, f"{environment} has no alb_dns_name output: it is not built"
    last = ""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read() or b"{}")
                return True, f"200 from {body.get('color', '?')} {body.get('version', '?')}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
    return False, f"{url} did not serve: {last}"


def no_change_plan(target: Target, environment: str) -> Check:
    """A plan of the environment's code against the cloud shows no changes."""
    result = Stack(environment, target).plan()
    if result.has_changes:
        changed = ", ".join(f"{c.action} {c.address}" for c in result.changes[:5])
        return False, f"the plan has changes: {changed}"
    return True, "no changes"


def ledger_consistent(target: Target, environment: str) -> Check:
    """No deployment in progress, no deployment lock, and the listener's live weights are the
    ones the state recorded (``deployment.green_weight``)."""
    stack = Stack(environment, target)
    ledger = Ledger(target, StackNames.for_target(target).ledger_table)
    if (active := ledger.active(environment)) is not None:
        return False, f"deployment {active.id} is still in progress ({active.phase})"
    if (holder := ledger.lock_holder(environment)) is not None:
        return False, f"the deployment lock is held by {holder.describe()}"
    outputs = stack.outputs()
    recorded = outputs.get("deployment", {}).get("green_weight")
    live = live_green_weight(target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"]))
    if live != recorded:
        return False, f"the listener sends {live} % to green, the state says {recorded} %"
    return True, f"green weight {live} % live and in state; no deployment running"


def live_green_weight(target: Target, listener_arn: str, green_group_arn: str) -> int | None:
    """The weight the listener's default forward gives the green target group, read from ELBv2."""
    try:
        listener = target.client("elbv2").describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    except ClientError:
        return None
    for action in listener.get("DefaultActions", []):
        groups: list[dict[str, Any]] = action.get("ForwardConfig", {}).get("TargetGroups", [])
        weights = {g["TargetGroupArn"]: int(g.get("Weight", 0)) for g in groups}
        if weights:
            total = sum(weights.values()) or 1
            return round(100 * weights.get(green_group_arn, 0) / total)
    return None


#: The checks every drill's steady state holds, by the name its journal shows.
STEADY_STATE = {
    "alb-serves": alb_serves,
    "no-change-plan": no_change_plan,
    "ledger-consistent": ledger_consistent,
}
