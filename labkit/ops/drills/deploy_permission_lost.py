"""Drill ``deploy-permission-lost``: one action removed from the GitHub deploy role's inline policy
through the IAM API, as a careless hand edit would (a "tidy-up" of a long policy), by default
``cloudwatch:GetMetricStatistics``, which the deploy's analysis gate needs. The next deploy stops
at the call that needs it and rolls back (its reason quotes AWS's AccessDenied);
``diagnose-access-denied`` names the missing action and applies global's code for
``module.github_oidc``, as ``fix-oidc-trust`` does.

The injection shows the refusal as the deploy job meets it: it assumes the role with a sandbox
token, makes the call, and hands AWS's message to the runbook as its ``error``, as a person pastes
it from the failed job's log. So the action is one it can call (:data:`CALLS`), and IAM must be
enforced (the sandbox's default; the drill checks first, before it changes anything).

Needs global applied with ``github_repository`` (its deploy role). The drill's checks: every action
of the role's inline policies as global's state records them (its last apply) is allowed by the
policies read back from IAM, judged by :mod:`labkit.identity.policy`; and the deploy job's
assume-role still works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import DrillError
from labkit.identity.policy import as_list, statements
from labkit.infra.stack import Stack
from labkit.infra.tfjson import raw_state_resources
from labkit.ops import access_denied
from labkit.ops.drills import Drill
from labkit.ops.drills.oidc_misconfigured import deploy_job_assumes, deploy_job_credentials, deploy_role
from labkit.ops.probes import Check
from labkit.target import Target


def _metric_statistics(as_role: Target) -> object:
    now = datetime.now(UTC).replace(microsecond=0)
    return as_role.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/ApplicationELB", MetricName="RequestCount", Statistics=["Sum"], Period=60,
        StartTime=now - timedelta(minutes=5), EndTime=now,
    )  # fmt: skip


DEFAULT_ACTION = "cloudwatch:GetMetricStatistics"
#: The actions the drill can remove, each with a call the deploy makes that needs it.
CALLS: dict[str, Callable[[Target], object]] = {
    "cloudwatch:GetMetricStatistics": _metric_statistics,  # the analysis gate's metrics
    "cloudwatch:DescribeAlarms": lambda as_role: as_role.client("cloudwatch").describe_alarms(MaxRecords=1),
}


def inject(target: Target, environment: str, *, action: str = DEFAULT_ACTION) -> dict[str, Any]:
    """Remove ``action`` from every statement of the deploy role's inline policies that names it (a
    statement left empty goes), then make the call as the deploy job and return AWS's refusal."""
    if action not in CALLS:
        raise DrillError(
            f"The drill cannot remove {action!r}: it shows the refusal by making the call.",
            hint=f"Actions it can call as the deploy job: {', '.join(CALLS)} (-p action ...).",
        )
    role_arn = deploy_role(target)[0]
    role = role_arn.rsplit("/", 1)[-1]
    as_role = target.as_identity(deploy_job_credentials(target).as_target_credentials())
    try:
        as_role.client("iam").list_users()  # the role may never do this
        raise DrillError(
            f"{role} was allowed iam:ListUsers: the sandbox does not enforce IAM, so no permission "
            "can be lost.",
            hint="Enforce it: `labkit.sandbox.set_iam_enforced(target, True)`, or restart the sandbox with "
            "LABKIT_SANDBOX_IAM=enforce.",
        )
    except ClientError:
        pass
    iam = target.client("iam")
    removed: list[dict[str, str]] = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        policy = json.loads(document) if isinstance(document, str) else document
        kept = []
        for n, statement in enumerate(statements(policy), 1):
            named = as_list(statement.get("Action"))
            if action in named:
                removed.append({"policy": name, "statement": str(statement.get("Sid") or f"#{n}")})
                statement = {**statement, "Action": [a for a in named if a != action]}
            if statement.get("Action") != []:
                kept.append(statement)
        if any(r["policy"] == name for r in removed):
            iam.put_role_policy(
                RoleName=role, PolicyName=name, PolicyDocument=json.dumps({**policy, "Statement": kept})
            )
    if not removed:
        raise DrillError(
            f"No statement of {role}'s inline policies names {action}: removed already?",
            hint="Put the policies back as global's code says: `labkit runbook run fix-oidc-trust "
            "-p environment global -p dry_run false -p confirm global`.",
        )
    try:
        CALLS[action](as_role)
    except ClientError as exc:
        refused = str(exc)  # as the job's log prints it
    else:
        raise DrillError(
            f"{role} may still call {action} after its removal: another policy allows it.",
            hint=f"Read the role's policies: `aws iam list-attached-role-policies --role-name {role}`.",
        )
    return {
        "role": role,
        "role_arn": role_arn,
        "action": action,
        "policy": removed[0]["policy"],
        "statement": removed[0]["statement"],
        "removed_from": removed,
        "refused": refused,
    }


def policy_as_applied(target: Target, _environment: str) -> Check:
    """Every action of the deploy role's inline policies, as global's state records them (its last
    apply), is allowed by the role's policies read back from IAM."""
    role_arn = deploy_role(target)[0]
    role = role_arn.rsplit("/", 1)[-1]
    applied = [
        r.values
        for r in raw_state_resources(Stack("global", target, reporter=None).state())
        if r.type == "aws_iam_role_policy" and r.values.get("role") == role
    ]
    live = access_denied.role_policies(target, role)
    actions = sorted(
        {
            action
            for values in applied
            for statement in statements(str(values["policy"]))
            if statement.get("Effect") == "Allow"
            for action in as_list(statement.get("Action"))
        }
    )
    denied = [
        action
        for action in actions
        if not access_denied.evaluate_policies(
            live, access_denied.request_for(action, None, target.region), "IAM"
        ).allowed
    ]
    if denied:
        return False, f"{role} is denied {', '.join(denied)}, which global's last apply granted"
    return True, f"{role}'s policies in IAM allow all {len(actions)} actions global's last apply granted"


DRILL = Drill(
    name="deploy-permission-lost",
    summary="an action removed from the deploy role's policy by hand: the deploy fails at that call",
    inject=inject,
    runbook="diagnose-access-denied",
    checks={
        "deploy-role-policy-as-applied": policy_as_applied,
        "deploy-role-assumable": lambda target, _environment: deploy_job_assumes(target),
    },
    runbook_parameters=lambda facts: {"error": facts["refused"]},
    steady_state=("alb-serves",),
    runbook_environment="global",
)
