"""The ``reconcile-drift`` runbook's logic: each drifted attribute reverted to the code, or adopted.

:func:`decide` turns a :class:`~labkit.infra.drift.DriftReport` into :class:`Change` rows, one per
drifted attribute, each with its decision (the runbook's ``decision``, or ``decisions[address]``):

- **revert** makes the cloud match the code again. Mostly that is an apply. A security-group rule
  added by hand is the exception: the code manages its rules as separate resources, so Terraform
  never sees the extra one and no apply removes it; it is revoked through the EC2 API instead;
- **adopt** keeps the live value by writing it into the environment's variables, the deployment
  variables the state's ``deployment`` output carries over from apply to apply (see
  :class:`labkit.infra.stack.Stack`), then applying. Only values that are such a variable can be
  adopted: the listener's weights (``green_weight``) and a fleet's desired capacity
  (``blue_capacity``/``green_capacity``; its minimum and maximum follow it, as the code ties them).
  Weights adopted are also recorded in the deployment ledger, as a finished deployment to the
  color the listener now favours, so ``labkit deploy status`` and a later rollback start from what
  is live. Anything else (a tag, a rule) is code: :func:`decide` refuses to adopt it and says so.

:func:`actions` plans the API calls first, then one apply with every adopted variable (the same
apply reverts the rest), then the ledger record; :func:`weights_agree` is Verify's check that the
ledger, the state and the listener agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.deploy.colors import Color, Layout, other, weight_of
from labkit.deploy.ledger import Ledger, default_owner, new_deployment_id, refuse_while_deploying
from labkit.deploy.strategy import all_at_once
from labkit.errors import RunbookError
from labkit.infra.drift import AttributeDrift, DriftReport, ResourceDrift, detect
from labkit.infra.stack import Stack, is_app_environment
from labkit.ops.probes import Check, ledger_consistent, live_green_weight
from labkit.ops.runbook import Action

DECISIONS = ("revert", "adopt")

_WEIGHT = re.compile(r"^default_action\[0\]\.forward\[0\]\.target_group\[arn=[^\]]+\]\.weight$")
_FLEET = re.compile(r'module\.fleet\["(blue|green)"\]\.aws_autoscaling_group\.')
_CAPACITY = ("desired_capacity", "min_size", "max_size")
_HAND_RULE = re.compile(r"^(ingress|egress)\[\d+\]$")


@dataclass(frozen=True)
class Change:
    """One drifted attribute and what the run does about it: ``how`` is ``apply`` (Terraform),
    ``api`` (a revert Terraform cannot make) or ``adopt`` (``variable`` set to ``value``)."""

    resource: ResourceDrift
    attribute: AttributeDrift | None  # None: the resource was deleted
    decision: str
    how: str
    variable: str | None = None
    value: Any = None

    def describe(self) -> str:
        what = f"{self.resource.address} {self.attribute.line() if self.attribute else '(deleted)'}"
        if self.how == "adopt":
            return f"adopt {what}: {self.variable} = {self.value}"
        if self.how == "api":
            return f"revert {what}: revoke the rule through the EC2 API (no apply removes it)"
        return f"revert {what}: apply the code"


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`decide` made of a drift report: one :class:`Change` per drifted attribute."""

    changes: tuple[Change, ...]

    def __str__(self) -> str:
        return "\n".join(c.describe() for c in self.changes) or "nothing drifted"


def decide(
    stack: Stack, report: DriftReport, decision: str, decisions: Mapping[str, str] | None = None
) -> Reconciliation:
    """Every drifted attribute with its decision; refuses an unknown decision or one that cannot be
    adopted (see the module doc) before anything changes."""
    decisions = dict(decisions or {})
    for value in [decision, *decisions.values()]:
        if value not in DECISIONS:
            raise RunbookError(
                f"decision {value!r} is neither of {DECISIONS}.", hint="Use 'revert' or 'adopt'."
            )
    changes: list[Change] = []
    refused: list[str] = []
    for resource in report.resources:
        chosen = decisions.get(resource.address, decision)
        attributes: list[AttributeDrift | None] = list(resource.attributes) or [None]
        for attribute in attributes:
            if chosen == "revert":
                api = attribute is not None and resource.type == "aws_security_group"
                api = api and attribute is not None and bool(_HAND_RULE.match(attribute.path))
                changes.append(Change(resource, attribute, chosen, "api" if api else "apply"))
                continue
            adopted = _adoptable(stack, resource, attribute)
            if adopted is None:
                refused.append(f"{resource.address} {attribute.path if attribute else '(deleted)'}")
            else:
                changes.append(Change(resource, attribute, chosen, "adopt", *adopted))
    if refused:
        raise RunbookError(
            f"These changes cannot be adopted: {'; '.join(refused)}. Only the listener's weights and a "
            "fleet's capacity are environment variables; the rest is code.",
            hint="Revert them (decision='revert', or decisions={ADDRESS: 'revert'}), or change the code "
            "in terraform/ to match and apply it.",
        )
    return Reconciliation(tuple(changes))


def _adoptable(
    stack: Stack, resource: ResourceDrift, attribute: AttributeDrift | None
) -> tuple[str, Any] | None:
    """(variable, live value) that adopts ``attribute``, or None when it is not a variable."""
    if attribute is None:
        return None
    if resource.type.startswith("aws_lb_listener") and _WEIGHT.match(attribute.path):
        outputs = stack.outputs()
        live = live_green_weight(
            stack.target, str(outputs["listener_arn"]), str(outputs["green_target_group_arn"])
        )
        return None if live is None else ("green_weight", live)
    fleet = _FLEET.search(resource.address)
    if fleet and attribute.path in _CAPACITY:
        name = str(stack.outputs()[f"{fleet[1]}_asg_name"])
        group = stack.target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return f"{fleet[1]}_capacity", int(group["AutoScalingGroups"][0]["DesiredCapacity"])
    return None


def actions(stack: Stack, reconciliation: Reconciliation) -> list[Action]:
    """The API reverts, then one apply (adopted variables set, everything else back to the code),
    then the ledger record of adopted weights."""
    changes = reconciliation.changes
    planned = [
        Action(c.describe(), functools.partial(revoke_rule, stack, c)) for c in changes if c.how == "api"
    ]
    variables = {c.variable: c.value for c in changes if c.how == "adopt" and c.variable}
    if any(c.how in ("apply", "adopt") for c in changes):
        adopted = ", ".join(f"{k}={v}" for k, v in sorted(variables.items()))
        reverted = sorted({c.resource.address for c in changes if c.how == "apply"})
        words = [
            f"adopting {adopted}" if adopted else "",
            f"reverting {len(reverted)} resource(s)" if reverted else "",
        ]
        planned.append(
            Action(
                f"apply {stack.env} ({'; '.join(w for w in words if w)})",
                lambda: _apply(stack, variables),
            )
        )
    if "green_weight" in variables:
        weight = int(variables["green_weight"])
        planned.append(
            Action(
                f"record green at {weight} % in the deployment ledger", lambda: record_weights(stack, weight)
            )
        )
    return planned


def _apply(stack: Stack, variables: Mapping[str, Any]) -> str:
    refuse_while_deploying(stack.target, stack.names.ledger_table, stack.env, "reconcile")
    result = stack.apply(variables)
    return f"{result.added} added, {result.changed} changed, {result.removed} destroyed"


def revoke_rule(stack: Stack, change: Change) -> str:
    """Revoke the hand-added rule ``change`` names (its entry as Terraform reads it back)."""
    assert change.attribute is not None and isinstance(change.attribute.cloud, Mapping)
    entry = change.attribute.cloud
    permission: dict[str, Any] = {"IpProtocol": str(entry["protocol"])}
    if entry["protocol"] != "-1":
        permission.update(FromPort=int(entry["from_port"]), ToPort=int(entry["to_port"]))
    permission["IpRanges"] = [{"CidrIp": c} for c in entry.get("cidr_blocks") or []]
    permission["Ipv6Ranges"] = [{"CidrIpv6": c} for c in entry.get("ipv6_cidr_blocks") or []]
    permission["PrefixListIds"] = [{"PrefixListId": p} for p in entry.get("prefix_list_ids") or []]
    permission["UserIdGroupPairs"] = [{"GroupId": g} for g in entry.get("security_groups") or []]
    group = str(stack.state_attributes(change.resource.address)["id"])
    ec2 = stack.target.client("ec2")
    kind = change.attribute.path.split("[", 1)[0]
    if kind == "ingress":
        ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[permission])
    else:
        ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[permission])
    return f"revoked from {group}"


def record_weights(stack: Stack, green_weight: int) -> str:
    """Record the adopted weights in the ledger: a finished deployment to the color with most of the
    traffic, under the environment's deployment lock (so no deployment runs meanwhile)."""
    layout = Layout.from_outputs(stack.deployment())
    to: Color = "green" if green_weight >= 50 else "blue"
    away = other(to)
    ledger = Ledger(stack.target, stack.names.ledger_table)
    deployment_id = new_deployment_id()
    lock = ledger.acquire_lock(stack.env, default_owner(), deployment_id)
    try:
        record = ledger.start(
            stack.env,
            layout.versions[to],
            from_color=away,
            to_color=to,
            strategy=all_at_once(bake_s=0),
            from_version=layout.versions[away],
            deployment_id=deployment_id,
            lock=lock,
        )
        ledger.update(record.id, phase="adopted", weight=weight_of(to, green_weight), token=lock.token)
        ledger.finish(
            record.id,
            "succeeded",
            f"adopted drift: the listener's weights were set outside labkit ({to} at "
            f"{weight_of(to, green_weight)} %); reconcile-drift recorded them",
            token=lock.token,
        )
    finally:
        ledger.release_lock(lock)
    return f"deployment {record.id}"


def no_drift(stack: Stack) -> Check:
    """A refresh-only plan finds nothing that differs from the state (read-back differences aside)."""
    report = detect(stack)
    if report.has_drift:
        return False, "; ".join(report.lines()[:4])
    return True, "no drift"


def no_changes(stack: Stack) -> Check:
    """A plan of the code (and the deployment variables) against the state shows no changes.

    Without a refresh: right after :func:`no_drift` found the cloud as the state records it, a
    refresh would only read it all back again (most of a plan's time) to the same result."""
    result = stack.plan(refresh=False)
    if result.has_changes:
        return False, "the plan has changes: " + ", ".join(
            f"{c.action} {c.address}" for c in result.changes[:5]
        )
    return True, "no changes"


def weights_agree(stack: Stack) -> Check:
    """The listener's live weights are the state's (``deployment.green_weight``, no deployment
    running: :func:`labkit.ops.probes.ledger_consistent`) and the ledger's latest deployment's."""
    if not is_app_environment(stack.env):
        return True, f"{stack.env} has no listener"
    ok, detail = ledger_consistent(stack.target, stack.env)
    if not ok:
        return ok, detail
    history = Ledger(stack.target, stack.names.ledger_table).list(stack.env)
    if not history:
        return True, f"{detail}; no deployment recorded"
    latest = history[0]
    recorded = latest.weight if latest.to_color == "green" else 100 - latest.weight
    live = int(stack.deployment()["green_weight"])
    if recorded != live:
        return (
            False,
            f"the ledger's latest deployment {latest.id} has green at {recorded} %, the listener {live} %",
        )
    return True, f"{detail}; the ledger's latest deployment agrees ({latest.id})"
