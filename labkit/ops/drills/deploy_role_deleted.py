"""Drill ``deploy-role-deleted``: the GitHub deploy role deleted by hand (its inline policies first,
as IAM requires), as a clean-up of "unused" roles would. Every deploy job's assume-role is refused
from then on; ``labkit doctor`` fails its ``deploy role`` check (global's state names a role that IAM
no longer has), and ``fix-oidc-trust`` recreates it with its policies by applying global's code for
``module.github_oidc`` (its diagnosis names the missing role).

Why that runbook and not ``restore-environment``: only two or three resources of global are gone, and
global holds the state bucket and lock table of every environment; its targeted apply touches the
GitHub module alone, where rebuilding would take global whole through a plan for nothing.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.lab.doctor import check_deploy_role
from labkit.ops.drills import Drill
from labkit.ops.drills.oidc_misconfigured import deploy_job_assumes
from labkit.ops.probes import Check
from labkit.target import Target


def inject(target: Target, environment: str) -> dict[str, Any]:
    """Delete the deploy role that global's state names, its inline and attached policies first."""
    role_arn = str(Stack("global", target, reporter=None).outputs().get("github_deploy_role_arn") or "")
    if not role_arn:
        raise DrillError(
            "global has no GitHub deploy role to delete.", hint="Apply global with github_repository set."
        )
    name, iam = role_arn.rsplit("/", 1)[-1], target.client("iam")
    inline = iam.list_role_policies(RoleName=name)["PolicyNames"]
    for policy in inline:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
    for arn in attached:
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
    iam.delete_role(RoleName=name)
    return {"role": name, "inline_policies": inline, "attached_policies": attached}


def doctor_passes(target: Target, _environment: str) -> Check:
    """``labkit doctor``'s deploy-role check."""
    found = check_deploy_role(target)
    if found is None:
        return False, "global has no deploy role in its state"
    return bool(found.ok), found.detail


DRILL = Drill(
    name="deploy-role-deleted",
    summary="the GitHub deploy role deleted by hand: every deploy job is refused at assume-role",
    inject=inject,
    runbook="fix-oidc-trust",
    checks={
        "doctor-deploy-role": doctor_passes,
        "deploy-role-assumable": lambda target, _environment: deploy_job_assumes(target),
    },
    steady_state=("alb-serves",),
    runbook_environment="global",
)
