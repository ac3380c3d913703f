"""Drill ``name-conflict``: the state no longer holds a resource that still exists, as after a
``terraform state rm`` typed into the wrong shell or a state restored from before the resource was
made, so the next apply wants to create it again under the name it has, the idle color's target
group's here (the same happens to a target group made by hand under a name an environment wants).
The AWS provider looks the name up first and fails with ``ELBv2 Target Group (NAME) already
exists``; the API itself answers ``DuplicateTargetGroupName``. The drill runs that apply and keeps
its error. ``resolve-name-conflict`` finds the name taken and its owner (no state), and imports it."""

from __future__ import annotations

from typing import Any

from labkit.errors import DrillError, TerraformError
from labkit.infra.envnames import DerivedNames
from labkit.infra.stack import Stack
from labkit.infra.tfjson import raw_state_resources
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target

TARGET_GROUP = 'module.environment.module.alb.aws_lb_target_group.this["{color}"]'


def inject(target: Target, environment: str) -> dict[str, Any]:
    """Drop the idle color's target group from the state, then apply as the next deploy would: the
    error it fails with."""
    stack = Stack(environment, target, reporter=None)
    deployment = stack.deployment()
    weight = int(deployment.get("green_weight") or 0)
    if weight not in (0, 100):
        raise DrillError(
            f"{environment} splits its traffic ({weight}% to green): a deployment is under way.",
            hint="Finish it or roll it back first (`labkit deploy status`).",
        )
    idle = "green" if weight == 0 else "blue"
    address = TARGET_GROUP.format(color=idle)
    values = stack.state_attributes(address)
    stack.forget(address)
    try:
        stack.apply()
    except TerraformError as exc:
        error = exc.message
    else:
        raise DrillError(
            f"The apply of {environment} succeeded although {values['name']} exists and no state holds it.",
            hint="The target (or its sandbox) accepts a second target group of one name: AWS does not.",
        )
    return {"address": address, "name": values["name"], "arn": values["arn"], "error": error}


def target_groups_held(target: Target, environment: str) -> Check:
    """Each target group the account has under the environment's names is the one its state holds
    (read from ELBv2 and the state object, not from a plan)."""
    stack = Stack(environment, target, reporter=None)
    held = {
        str(r.values.get("name")): str(r.values.get("arn"))
        for r in raw_state_resources(stack.state())
        if r.type == "aws_lb_target_group"
    }
    names = DerivedNames(stack.names.project, environment).names()
    groups = target.client("elbv2").describe_target_groups()["TargetGroups"]
    wrong = []
    for color in ("blue", "green"):
        name = names[f"target group {color}"][0]
        arns = [g["TargetGroupArn"] for g in groups if g["TargetGroupName"] == name]
        if arns and held.get(name) not in arns:
            wrong.append(f"{name} exists ({arns[0]}), the state holds {held.get(name) or 'nothing'}")
    return not wrong, "; ".join(wrong) or "both target groups are held by the state"


DRILL = Drill(
    name="name-conflict",
    summary="a resource dropped from the state: the next apply wants its name, and AWS refuses",
    inject=inject,
    runbook="resolve-name-conflict",
    checks={"target-groups-held": target_groups_held},
    runbook_parameters=lambda facts: {"decision": "import"},
)
