"""Drill ``oidc-misconfigured``: a careless change to global's GitHub OIDC provider or to the deploy
role's trust policy, made through the IAM API, so that the deploy job's assume-role is refused with
AWS's message. ``fix-oidc-trust`` names the mismatch and applies global's code for the trust.

Variants (``-p variant``):

- ``wrong-audience``: the provider's audience (client id) ``sts.amazonaws.com`` replaced by
  ``https://github.com/OWNER``, GitHub's default audience for a token requested without one
  (STS: ``InvalidIdentityToken: Incorrect token audience``);
- ``wrong-thumbprint``: the provider's thumbprints replaced by GitHub's, pasted into a provider for
  another issuer (``InvalidIdentityToken: ... doesn't match configured thumbprint``);
- ``wrong-branch``: the trust policy's ``sub`` condition narrowed to the ``develop`` branch, while
  the deploy job runs in its GitHub environment (``AccessDenied: Not authorized to perform
  sts:AssumeRoleWithWebIdentity``).

Needs global applied with ``github_repository`` (its deploy role and provider). The steady state is
the environment serving plus the drill's own check: the deploy job's token, requested from the
sandbox's issuer for the subject global trusts, is exchanged for the role's credentials.
"""

from __future__ import annotations

import json
from typing import Any

from labkit import sandbox
from labkit.errors import DrillError, RunbookError, WebIdentityRejected
from labkit.identity.credentials import TemporaryCredentials, assume_role_with_web_identity
from labkit.identity.github import STS_AUDIENCE, parse_subject
from labkit.infra.stack import Stack
from labkit.ops import oidc_trust
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target

VARIANTS = ("wrong-audience", "wrong-thumbprint", "wrong-branch")
#: GitHub's issuer's thumbprints (global's default): right for GitHub, wrong for any other issuer.
GITHUB_THUMBPRINT = "6938fd4d98bab03faadb97b34396831e3780aea1"


def deploy_role(target: Target) -> tuple[str, str, str]:
    """(role ARN, provider ARN, trusted subject) from global's state (the runbook's reading of it)."""
    try:
        trust = oidc_trust.deploy_trust(Stack("global", target, reporter=None))
    except RunbookError:
        raise DrillError(
            "global has no GitHub deploy role to misconfigure.",
            hint="Apply global with github_repository set (and, on the sandbox, github_oidc_issuer_url and "
            "github_oidc_thumbprints from labkit.sandbox.oidc_issuer).",
        ) from None
    return trust.role_arn, trust.provider_arn, trust.subject


def deploy_job_credentials(target: Target) -> TemporaryCredentials:
    """The deploy job's assume-role: a sandbox token for global's trusted subject exchanged for the
    role's credentials; WebIdentityRejected when STS refuses it."""
    role, _, subject = deploy_role(target)
    return _exchange(target, role, subject)


def deploy_job_assumes(target: Target) -> Check:
    """:func:`deploy_job_credentials` as a check: (False, STS's code and message) when refused."""
    role, _, subject = deploy_role(target)
    try:
        found = _exchange(target, role, subject)
    except WebIdentityRejected as refused:
        return False, refused.message  # "... was refused: CODE: AWS's message"
    return True, f"{subject} assumed {found.assumed_role_arn}"


def _exchange(target: Target, role: str, subject: str) -> TemporaryCredentials:
    token = sandbox.id_token(target, parse_subject(subject), from_actions=False)  # the sandbox's own
    return assume_role_with_web_identity(target, role, token, session_name="deploy")


def inject(target: Target, environment: str, *, variant: str = "wrong-branch") -> dict[str, Any]:
    """Change the provider or the trust policy as ``variant`` says; what changed and STS's refusal."""
    if variant not in VARIANTS:
        raise DrillError(f"There is no variant {variant!r}.", hint=f"Variants: {', '.join(VARIANTS)}.")
    role, provider, subject = deploy_role(target)
    iam = target.client("iam")
    repository = parse_subject(subject).repository
    facts: dict[str, Any] = {"variant": variant, "role_arn": role, "provider_arn": provider}
    if variant == "wrong-audience":
        wrong = f"https://github.com/{repository.split('/')[0]}"
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=provider, ClientID=wrong)
        iam.remove_client_id_from_open_id_connect_provider(
            OpenIDConnectProviderArn=provider, ClientID=STS_AUDIENCE
        )
        facts["client_ids"] = [wrong]
    elif variant == "wrong-thumbprint":
        iam.update_open_id_connect_provider_thumbprint(
            OpenIDConnectProviderArn=provider, ThumbprintList=[GITHUB_THUMBPRINT]
        )
        facts["thumbprints"] = [GITHUB_THUMBPRINT]
    else:
        name = role.rsplit("/", 1)[-1]
        document = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        policy = json.loads(document) if isinstance(document, str) else document
        wrong = f"repo:{repository}:ref:refs/heads/develop"
        for statement in policy["Statement"]:
            for keys in (statement.get("Condition") or {}).values():
                for key in [k for k in keys if k.endswith(":sub")]:
                    keys[key] = wrong
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(policy))
        facts["sub_condition"] = wrong
    assumed, answer = deploy_job_assumes(target)
    if assumed:
        raise DrillError(
            f"The {variant} change did not break the deploy job's assume-role: {answer}.",
            hint="Is the sandbox's STS validating web identity tokens? `labkit sandbox status`.",
        )
    facts["refused"] = answer
    return facts


DRILL = Drill(
    name="oidc-misconfigured",
    summary="the GitHub OIDC provider or the deploy role's trust changed by hand: the deploy job is refused",
    inject=inject,
    runbook="fix-oidc-trust",
    checks={"deploy-role-assumable": lambda target, _environment: deploy_job_assumes(target)},
    steady_state=("alb-serves",),
    runbook_environment="global",
)
