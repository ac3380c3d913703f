"""Drill ``drift``: a change made to the cloud outside Terraform, as people make them, through the
AWS APIs (``variant``):

- ``listener-weights``: the on-call engineer's emergency rollback, made with one ELBv2 call instead
  of a deployment. The drill first stages the moment it happens in: a deployment has just moved all
  traffic to green, and blue still runs in its rollback window (both applied with Terraform, the
  deployment recorded in the ledger); then the call sends everything back to blue. Terraform's
  state and the ledger still say green, so the next routine apply would undo the rollback: this
  one should be *adopted*;
- ``sg-rule``: an ingress rule added by hand to the load balancer's security group (SSH from a
  documentation range, "just for debugging");
- ``asg-capacity``: the blue fleet scaled out by hand (desired capacity and maximum size + 1);
- ``tag-removed``: the ``Color`` tag removed from the blue target group.

Each returns the resource and attributes that ``labkit stack drift`` must then report, exactly, and
the decision the ``reconcile-drift`` runbook should take.
"""

from __future__ import annotations

from typing import Any

from labkit.deploy.health import wait_healthy
from labkit.deploy.ledger import Ledger
from labkit.deploy.listener import set_weights
from labkit.deploy.strategy import all_at_once
from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.ops import reconcile
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target

VARIANTS = ("listener-weights", "sg-rule", "asg-capacity", "tag-removed")

LISTENER = "module.environment.module.alb.aws_lb_listener.http"
ALB_SECURITY_GROUP = "module.environment.module.alb.aws_security_group.alb"
BLUE_ASG = 'module.environment.module.fleet["blue"].aws_autoscaling_group.this'
BLUE_TARGET_GROUP = 'module.environment.module.alb.aws_lb_target_group.this["blue"]'

#: The rule the sg-rule variant adds: SSH from a documentation range (RFC 5737), never a real one.
HAND_RULE = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "203.0.113.0/24", "Description": "ssh for debugging (added by hand)"}],
}


def inject(target: Target, environment: str, *, variant: str = "listener-weights") -> dict[str, Any]:
    """Make ``variant``'s change through the AWS API; what changed, and where drift must show it."""
    if variant not in VARIANTS:
        raise DrillError(
            f"drift has no variant {variant!r}.", hint=f"Use one of: {', '.join(VARIANTS)} (-p variant NAME)."
        )
    stack = Stack(environment, target, reporter=None)
    outputs = stack.outputs()
    if not outputs.get("listener_arn"):
        raise DrillError(
            f"{environment} is not built on {target.name}.",
            hint=f"Apply it first: `labkit stack apply {environment}`.",
        )
    if variant == "listener-weights":
        return _listener_weights(stack, outputs)
    if variant == "sg-rule":
        group = str(stack.state_attributes(ALB_SECURITY_GROUP)["id"])
        target.client("ec2").authorize_security_group_ingress(GroupId=group, IpPermissions=[HAND_RULE])
        return _facts(variant, ALB_SECURITY_GROUP, ["ingress[0]"], "revert", security_group=group)
    if variant == "asg-capacity":
        name = str(outputs["blue_asg_name"])
        autoscaling = target.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        wanted = int(group["DesiredCapacity"]) + 1
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, DesiredCapacity=wanted, MaxSize=max(wanted, int(group["MaxSize"]))
        )
        return _facts(variant, BLUE_ASG, ["desired_capacity", "max_size"], "revert", asg=name, desired=wanted)
    arn = str(outputs["blue_target_group_arn"])
    target.client("elbv2").remove_tags(ResourceArns=[arn], TagKeys=["Color"])
    return _facts(variant, BLUE_TARGET_GROUP, ["tags.Color"], "revert", target_group=arn)


def _facts(variant: str, address: str, attributes: list[str], decision: str, **more: Any) -> dict[str, Any]:
    return {"variant": variant, "address": address, "attributes": attributes, "decision": decision, **more}


def _listener_weights(stack: Stack, outputs: dict[str, Any]) -> dict[str, Any]:
    """Stage a deployment that just moved everything to green (blue still warm), then roll it back
    to blue with one ELBv2 call, as an on-call engineer would."""
    deployment = stack.deployment()
    version, capacity = str(deployment["blue_version"]), max(1, int(deployment["blue_capacity"]))
    if deployment.get("green_weight") != 0 or int(deployment["blue_capacity"]) < 1:
        raise DrillError(
            f"listener-weights starts from blue serving all traffic; {stack.env} has {deployment}.",
            hint=f"Put blue back at 100 % first: `labkit stack apply {stack.env} --var green_weight=0`.",
        )
    target = stack.target
    stack.apply({"green_version": version, "green_capacity": capacity})
    healthy, report, _ = wait_healthy(
        target,
        asg_name=str(stack.outputs()["green_asg_name"]),
        target_group_arn=str(outputs["green_target_group_arn"]),
        wanted=capacity,
        timeout_s=180,
        say=lambda _: None,
    )
    if not healthy:
        raise DrillError(
            f"green did not turn healthy while staging: {report}", hint="`labkit deploy status`."
        )
    stack.apply({"green_weight": 100})
    ledger = Ledger(target, stack.names.ledger_table)
    record = ledger.start(
        stack.env,
        version,
        from_color="blue",
        to_color="green",
        strategy=all_at_once(bake_s=0),
        from_version=version,
        who="drill drift (staged deployment)",
    )
    ledger.update(record.id, phase="shift-100", step_index=0, weight=100)
    ledger.finish(record.id, "succeeded", "staged by the drift drill: green at 100 %, blue still warm")
    outputs = stack.outputs()
    set_weights(target, outputs, {"blue": 100, "green": 0})  # the on-call engineer's rollback
    groups = [str(outputs[f"{color}_target_group_arn"]) for color in ("blue", "green")]
    attributes = [f"default_action[0].forward[0].target_group[arn={arn}].weight" for arn in groups]
    return _facts("listener-weights", LISTENER, attributes, "adopt", staged_deployment=record.id)


def no_drift(target: Target, environment: str) -> Check:
    """A refresh-only plan finds nothing that differs from the state (read-back differences aside)."""
    return reconcile.no_drift(Stack(environment, target, reporter=None))


DRILL = Drill(
    name="drift",
    summary="a change made through the AWS API outside Terraform (weights, a rule, capacity, a tag)",
    inject=inject,
    runbook="reconcile-drift",
    checks={"no-drift": no_drift},
    runbook_parameters=lambda facts: {"decision": facts["decision"]},
)
