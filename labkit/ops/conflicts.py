"""The ``resolve-name-conflict`` runbook's logic: resources Terraform wants to create under a name
that an existing resource has already, which AWS refuses (``DuplicateTargetGroupName``,
``AlreadyExists``, ``EntityAlreadyExists``, ...).

Diagnose plans the environment and looks each name it would create up in the account; the owner
of what it finds is the environment whose state holds it, or none. Then, by ``decision``:

- **import**: ``terraform import`` the existing resource into the address that wants it (the code
  already declares it: nothing is written). For a resource no state holds: one that the
  environment lost from its state, or one made by hand that the environment may own from now on.
  Refused for a resource another environment's state holds: two states would then manage it.
- **rename**: the environment takes other names, which AWS cannot give an existing resource. Only
  a developer environment can (its names come from NAME): the runbook names the commands
  (``labkit env destroy``, then ``labkit env create`` with another NAME) and acts on nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from labkit.errors import NameConflictError
from labkit.infra.envnames import is_dev_environment
from labkit.infra.inventory import held_ids
from labkit.infra.stack import Stack, app_environments
from labkit.infra.terraform import PlanResult
from labkit.ops.runbook import Action
from labkit.target import Target

DECISIONS = ("import", "rename")


def _target_group(target: Target, name: str) -> str | None:
    try:
        groups = target.client("elbv2").describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) == "TargetGroupNotFound":
            return None
        raise
    return str(groups[0]["TargetGroupArn"]) if groups else None


def _load_balancer(target: Target, name: str) -> str | None:
    try:
        found = target.client("elbv2").describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) == "LoadBalancerNotFound":
            return None
        raise
    return str(found[0]["LoadBalancerArn"]) if found else None


def _auto_scaling_group(target: Target, name: str) -> str | None:
    groups = target.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return name if groups["AutoScalingGroups"] else None


def _iam_role(target: Target, name: str) -> str | None:
    try:
        target.client("iam").get_role(RoleName=name)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) == "NoSuchEntity":
            return None
        raise
    return name


#: Terraform type -> a lookup of its name in the account, answering the id ``terraform import`` takes.
LOOKUPS: dict[str, Callable[[Target, str], str | None]] = {
    "aws_lb_target_group": _target_group,
    "aws_lb": _load_balancer,
    "aws_autoscaling_group": _auto_scaling_group,
    "aws_iam_role": _iam_role,
}


@dataclass(frozen=True)
class Conflict:
    """A resource the plan would create whose name an existing resource has."""

    address: str
    resource_type: str
    name: str
    existing: str
    #: The environment whose state holds ``existing``, or None.
    owner: str | None

    def line(self) -> str:
        held = f"held by {self.owner}'s state" if self.owner else "held by no state"
        return f"{self.address} wants {self.name!r}: {self.existing} exists, {held}"


def inspect(stack: Stack) -> list[Conflict]:
    """The Diagnose step: plan the environment, look up each name it would create."""
    return conflicts_in(stack, stack.plan())


def conflicts_in(stack: Stack, plan: PlanResult) -> list[Conflict]:
    """The names ``plan`` would create that the account has already, with their owners."""
    wanted = []
    for change in plan.raw.get("resource_changes", []):
        actions = change.get("change", {}).get("actions", [])
        name = (change.get("change", {}).get("after") or {}).get("name")
        if "create" in actions and change.get("type") in LOOKUPS and isinstance(name, str):
            wanted.append((str(change["address"]), str(change["type"]), name))
    if not wanted:
        return []
    envs = dict.fromkeys(("global", *app_environments(stack.target), stack.env))
    held = held_ids({env: Stack(env, stack.target, reporter=None).state() for env in envs})
    found = []
    for address, kind, name in wanted:
        existing = LOOKUPS[kind](stack.target, name)
        if existing is not None:
            found.append(Conflict(address, kind, name, existing, held.get(existing)))
    return found


def actions(stack: Stack, conflicts: list[Conflict], decision: str) -> list[Action]:
    """The Plan step: one import per conflict, or (rename) the refusal that names what to run."""
    if decision not in DECISIONS:
        raise NameConflictError(
            f"decision is {decision!r}.", hint=f"Set decision to one of: {', '.join(DECISIONS)}."
        )
    if not conflicts:
        return []
    if decision == "rename":
        how = (
            f"`labkit env destroy {stack.env}`, then `labkit env create ANOTHER-NAME` (every name "
            "derives from it)"
            if is_dev_environment(stack.env)
            else f"{stack.env}'s names are fixed (<project>-{stack.env}-...): import, or delete the other "
            "resource once you know nobody needs it"
        )
        raise NameConflictError(
            f"{stack.env} cannot rename what it wants: AWS renames none of these resources, so the "
            "environment itself must take other names.",
            hint=f"{how}.",
        )
    foreign = [c for c in conflicts if c.owner not in (None, stack.env)]
    if foreign:
        raise NameConflictError(
            "Refusing to import what another environment's state holds (two states would manage it): "
            + "; ".join(c.line() for c in foreign) + ".",
            hint="Use -p decision rename: this environment must take other names.",
        )
    ours = [c for c in conflicts if c.owner is None]
    planned = [Action(f"Import {c.existing} into {c.address}", _importer(stack, c)) for c in ours]
    planned.append(Action(f"Apply {stack.env}: what waited on the conflict is built", lambda: stack.apply()))
    return planned


def _importer(stack: Stack, conflict: Conflict) -> Callable[[], str]:
    def run() -> str:
        stack.import_resource(conflict.address, conflict.existing)
        return f"imported {conflict.existing} into {conflict.address}"

    return run


def verify_none(stack: Stack) -> tuple[bool, str]:
    """No name the code wants is taken, and a plan shows no changes (one fresh plan, its names
    looked up again)."""
    plan = stack.plan()
    left = conflicts_in(stack, plan)
    return not left and not plan.has_changes, "; ".join(c.line() for c in left) or plan.summary()
