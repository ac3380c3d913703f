"""What the ``diagnose-access-denied`` runbook calls: which action a role was refused, why its
policies refuse it, whether global's code grants it, and the apply that puts the code's policy back.

**Diagnose**:

1. :func:`find_denial` reads the principal, action and resource out of an AccessDenied message as
   AWS prints it (``User: ARN is not authorized to perform: ACTION[ on resource: RES] because ...``;
   the sandbox prints the same), pasted as the ``error`` parameter or, by default, taken from the
   reason of the newest rolled-back or aborted deployment in the deployment ledger: a deploy that
   lost a permission fails at the call that needs it and rolls back with that reason.
2. :func:`simulate` asks whether the role's policies allow that action now: on AWS with IAM's policy
   simulator (``SimulatePrincipalPolicy``); the sandbox (moto) has none, so there the role's inline
   and attached policies are read from IAM and evaluated with :mod:`labkit.identity.policy`, the
   evaluator the sandbox's own authorization uses. Only the role's identity policies are judged:
   a session policy, a permissions boundary, an SCP or a resource policy can refuse too, and when
   the role's policies allow the action the diagnosis says so.
3. :func:`inspect` reads what global's code grants the role: a plan of global targeted at
   ``module.github_oidc`` (the GitHub roles and their inline policies), whose planned documents are
   the code's, evaluated the same way. Why a plan and not the policy in global's state: the state
   holds the policy as last applied, not what the code says now nor what an apply would write; the
   plan is both, shows the hand edit as a change to the role's policy, and is the plan the Plan
   step needs anyway (reading it whole costs one ``terraform show -json``). Managed policies
   attached in code are not read: the module attaches none.

**Plan/Act**: when IAM refuses what the code grants, the targeted apply that ``fix-oidc-trust``
makes (:func:`labkit.ops.oidc_trust.targeted_apply`); when the code does not grant it either, nothing
is applied and RunbookError names the file to change.

**Verify**: the role's policies allow the action again, and the module matches global's code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from labkit.deploy.ledger import Ledger
from labkit.errors import RunbookError
from labkit.identity.policy import Decision, Request, evaluate, statements
from labkit.infra.stack import Stack, StackNames
from labkit.infra.terraform import PlanResult
from labkit.ops import oidc_trust
from labkit.ops.runbook import Action
from labkit.target import Target

#: AWS's AccessDenied message (IAM's format, which CloudWatch, DynamoDB, S3... share).
_DENIED = re.compile(
    r"User: (?P<principal>arn:\S+) is not authorized to perform: (?P<action>[\w-]+:[\w*-]+)"
    r"(?: on resource: \"?(?P<resource>[^\s\"]+)\"?)?(?P<why>[^\n]*)"
)
#: STS's refusal of a web identity token: the trust policy's business, not a permission's.
_WEB_IDENTITY = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
#: Where global's code writes the GitHub roles' policies.
MODULE_FILE = "terraform/modules/github_oidc/main.tf"
#: Deployments whose reason says why they did not finish.
_FAILED = ("rolled_back", "aborted")


@dataclass(frozen=True)
class Denial:
    """One refused call: the caller's ARN as the message names it, the action, the resource when
    the message names one, AWS's reason, and where the message came from."""

    principal: str
    action: str
    resource: str | None
    why: str
    source: str = "the error given"

    @property
    def role(self) -> str | None:
        """The role's name for an assumed-role session or a role; None for any other principal."""
        session = self.principal.partition(":assumed-role/")[2]  # ROLE/SESSION
        if session:
            return session.split("/")[0]
        role = self.principal.partition(":role/")[2]  # [PATH/]ROLE
        return role.rsplit("/", 1)[-1] if role else None

    def __str__(self) -> str:
        on = f" on {self.resource}" if self.resource else ""
        why = self.why or "no reason given"
        return f"{self.principal} was refused {self.action}{on} ({why}); from {self.source}"


def parse(text: str, source: str = "the error given") -> Denial:
    """The AccessDenied message in ``text`` (a log line, a deployment's reason, a traceback)."""
    found = _DENIED.search(text)
    if found is None:
        if _WEB_IDENTITY in text:
            raise RunbookError(
                "That is STS refusing the deploy job's ID token at assume-role, not a missing permission.",
                hint="Run fix-oidc-trust: `labkit runbook run fix-oidc-trust -p environment global`.",
            )
        shown = text if len(text) <= 200 else text[:197] + "..."
        raise RunbookError(
            f"No AccessDenied message in {source}: {shown!r}.",
            hint="Give the error as AWS printed it (`User: ARN is not authorized to perform: ACTION ...`) "
            "as the parameter error, or leave error empty to read the newest failed deployment's reason "
            "(deploy_environment names its environment).",
        )
    why = found["why"].strip().rstrip(".\"')")
    return Denial(found["principal"], found["action"], found["resource"], why, source)


def find_denial(target: Target, error: str, deploy_environment: str) -> Denial:
    """The denial in ``error``, or when it is empty in the reason of ``deploy_environment``'s newest
    rolled-back or aborted deployment."""
    if error.strip():
        return parse(error)
    ledger = Ledger(target, StackNames.for_target(target).ledger_table)
    failed = next((d for d in ledger.list(deploy_environment) if d.status in _FAILED), None)
    if failed is None or not failed.reason:
        raise RunbookError(
            f"The deployment ledger has no rolled-back or aborted deployment of {deploy_environment}.",
            hint="Give the AccessDenied message as the parameter error (papermill: -p error '...'), or "
            "name the environment whose deploy failed: -p deploy_environment production.",
        )
    return parse(failed.reason, f"deployment {failed.id} of {deploy_environment} ({failed.status})")


# --- the role's policies, judged ---------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a set of policies decides for one request: the decision, the statements that make it
    (those that allow it, or the Deny that refuses it; none for an implicit deny), and how it was
    decided."""

    decision: Decision
    statements: tuple[str, ...]
    how: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOWED


def request_for(action: str, resource: str | None, region: str) -> Request:
    """The request to judge: ``action`` on ``resource`` (None: unknown). The region is the one
    condition key it knows (the deploy role's read statement is limited to it); any other condition
    is taken to hold, as the sandbox does for keys it cannot know, so only a missing action or a
    Deny can refuse."""
    context = {"aws:requestedregion": [region]}
    return Request(action, resource, context, knows=context.__contains__)


def evaluate_policies(policies: Mapping[str, str | Mapping[str, Any]], request: Request, how: str) -> Verdict:
    """The decision of ``policies`` (documents by name) on ``request``, naming the statements that
    make it as ``SID of NAME`` (``#N of NAME`` for a statement without one)."""
    decision = evaluate(policies.values(), request)
    deciding = Decision.EXPLICIT_DENY if decision is Decision.EXPLICIT_DENY else Decision.ALLOWED
    named = tuple(
        f"{s.get('Sid') or f'#{n}'} of {name}"
        for name, document in policies.items()
        for n, s in enumerate(statements(document), 1)
        if evaluate([{"Statement": [s]}], request) is deciding
    )
    return Verdict(decision, named if decision is not Decision.IMPLICIT_DENY else (), how)


def role_policies(target: Target, role: str) -> dict[str, str]:
    """The role's inline policies by name and its attached managed policies (their default
    version) by ARN, read from IAM."""
    iam = target.client("iam")
    found: dict[str, str] = {}
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for name in page["PolicyNames"]:
            found[name] = _document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        for attached in page["AttachedPolicies"]:
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
            found[arn] = _document(document)
    return found


def simulate(target: Target, role: str, denial: Denial) -> Verdict:
    """Whether ``role``'s policies allow the denied request now (see the module's docstring)."""
    if target.is_sandbox:
        policies = role_policies(target, role)
        how = "its policies read from IAM, evaluated by labkit.identity.policy (the sandbox has no simulator)"
        return evaluate_policies(policies, request_for(denial.action, denial.resource, target.region), how)
    iam = target.client("iam")
    arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    region = {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": [target.region],
              "ContextKeyType": "string"}  # fmt: skip
    asked: dict[str, Any] = {"PolicySourceArn": arn, "ActionNames": [denial.action]}
    asked["ContextEntries"] = [region]
    if denial.resource:
        asked["ResourceArns"] = [denial.resource]
    result = iam.simulate_principal_policy(**asked)["EvaluationResults"][0]
    decision = {"allowed": Decision.ALLOWED, "explicitDeny": Decision.EXPLICIT_DENY}.get(
        result["EvalDecision"], Decision.IMPLICIT_DENY
    )
    named = tuple(
        f"{m.get('SourcePolicyId', '?')} line {m.get('StartPosition', {}).get('Line', '?')}"
        for m in result.get("MatchedStatements", [])
    )
    return Verdict(decision, named, "IAM's policy simulator (SimulatePrincipalPolicy)")


def _document(document: str | Mapping[str, Any]) -> str:
    return document if isinstance(document, str) else json.dumps(document)


# --- global's code -----------------------------------------------------------------------------


def code_policies(plan: PlanResult, role: str) -> dict[str, str] | None:
    """The inline policies of ``role`` that ``plan`` (global's, targeted at module.github_oidc)
    writes, by name, as they will be after its apply; None when the plan holds no such role."""
    found: dict[str, str] = {}
    has_role = False
    for change in plan.raw.get("resource_changes", []):
        after = (change.get("change") or {}).get("after") or {}
        kind = change.get("type") if change.get("mode") == "managed" else None
        if kind == "aws_iam_role" and after.get("name") == role:
            has_role = True
        # A policy is unknown until applied when its role is created with it.
        elif kind == "aws_iam_role_policy" and after.get("role") == role and after.get("policy"):
            found[str(after["name"])] = str(after["policy"])
    return found if has_role or found else None


@dataclass(frozen=True)
class AccessFinding:
    """A denial judged against the role's policies in IAM (``live``) and in global's code (``code``,
    None when the role is not one of global's GitHub roles); ``drifted``: the role's policies that
    the targeted plan changes."""

    denial: Denial
    role: str
    live: Verdict
    code: Verdict | None
    drifted: tuple[str, ...]
    plan: PlanResult = field(repr=False)

    def __str__(self) -> str:
        # The conclusion first: the audit record keeps a step's first 300 characters.
        action, role = self.denial.action, self.role
        if self.live.allowed:
            return (
                f"{action} is allowed to role {role} now (by {', '.join(self.live.statements)}): the refusal "
                f"({self.denial.why}) no longer holds, or came from outside the role's policies (a session "
                f"policy, a permissions boundary, an SCP, a resource policy); {self.live.how}"
            )
        if self.live.decision is Decision.EXPLICIT_DENY:
            found = f"{action} is denied to role {role}: an explicit Deny in "
            found += ", ".join(self.live.statements)
        else:
            found = f"{action} is denied to role {role}: no statement of its policies allows it"
        if self.code is None:
            code = f"{role} is not one of global's GitHub roles ({oidc_trust.MODULE})"
        elif self.code.allowed:
            code = f"global's code grants it in statement {', '.join(self.code.statements)}: "
            code += "the policy in IAM was changed by hand"
            code += f" (the targeted plan changes {', '.join(self.drifted)})" if self.drifted else ""
        else:
            code = f"global's code does not grant it either ({MODULE_FILE})"
        return f"{found}; {code}; IAM judged by {self.live.how}; {self.denial}"


def inspect(global_stack: Stack, denial: Denial) -> AccessFinding:
    """Judge ``denial`` against the role's policies in IAM and in global's code (reads only: the
    plan is not applied)."""
    if global_stack.env != "global":
        raise RunbookError(
            f"The runbook reads global's code for the GitHub roles, not {global_stack.env}'s.",
            hint="Run it with -p environment global (the failed deploy's environment is deploy_environment).",
        )
    role = denial.role
    if role is None:
        raise RunbookError(
            f"{denial.principal} is not a role: this runbook diagnoses the roles global's code defines.",
            hint=f"Read that principal's policies: `aws iam simulate-principal-policy --policy-source-arn "
            f"{denial.principal} --action-names {denial.action}`.",
        )
    try:
        live = simulate(global_stack.target, role, denial)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
        raise RunbookError(
            f"The role {role} that was refused {denial.action} no longer exists in IAM.",
            hint="A deleted deploy role is applied again by fix-oidc-trust: "
            "`labkit runbook run fix-oidc-trust -p environment global`.",
        ) from exc
    plan = oidc_trust.plan_module(global_stack)
    policies = code_policies(plan, role)
    code = None
    if policies is not None:
        request = request_for(denial.action, denial.resource, global_stack.target.region)
        code = evaluate_policies(policies, request, "global's code")
    drifted = tuple(
        str(c.get("address"))
        for c in plan.raw.get("resource_changes", [])
        if c.get("type") == "aws_iam_role_policy"
        and ((c.get("change") or {}).get("after") or {}).get("role") == role
        and (c.get("change") or {}).get("actions") != ["no-op"]
    )
    return AccessFinding(denial, role, live, code, drifted, plan)


# --- Plan, Act, Verify ---


def actions(global_stack: Stack, finding: AccessFinding) -> list[Action]:
    """The targeted apply of global that writes the role's policies as its code says; none when
    IAM allows the action now. RunbookError when applying the code would not grant it."""
    action, role = finding.denial.action, finding.role
    if finding.live.allowed:
        return []
    if finding.code is None:
        raise RunbookError(
            f"{role} is refused {action}, and it is not one of global's GitHub roles: nothing here applies.",
            hint=f"Find the code that writes {role}'s policies (`grep -rn {role} terraform/`), grant "
            f"{action} there, then plan and apply that environment.",
        )
    if not finding.code.allowed:
        raise RunbookError(
            f"global's code does not grant {action} to {role} either: applying it would not help.",
            hint=f"Add {action} to the statement of {role}'s policy that should hold it in {MODULE_FILE} "
            "(the deploy's reads are in DescribeStack), then `labkit stack plan global` and apply it.",
        )
    if not finding.plan.has_changes:
        raise RunbookError(
            f"global's code grants {action} to {role} and its plan changes nothing, yet IAM refuses it: "
            f"{', '.join(finding.live.statements) or 'a policy the code does not manage'}.",
            hint=f"Look for a policy attached to {role} by hand: `aws iam list-attached-role-policies "
            f"--role-name {role}`; detach it, then run this runbook again.",
        )
    return [oidc_trust.targeted_apply(global_stack, finding.plan)]


def verify_allowed(global_stack: Stack, finding: AccessFinding) -> tuple[bool, str]:
    """The role's policies, judged as in the diagnosis, allow the action."""
    verdict = simulate(global_stack.target, finding.role, finding.denial)
    by = f" by {', '.join(verdict.statements)}" if verdict.statements else ""
    return verdict.allowed, f"{finding.denial.action} {verdict.decision.value}{by} for role {finding.role}"
