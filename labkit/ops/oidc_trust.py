"""What the ``fix-oidc-trust`` runbook calls: why the deploy job's ID token is refused at assume-role,
and the apply of global that puts the OIDC provider and the deploy role's trust back as its code says.

**Diagnose** (:func:`inspect`): global's state names the deploy role, its OIDC provider and the
subject it trusts (``github_trusted_subject``); a token for that subject is requested as the deploy
job requests it (from GitHub in Actions, else from the sandbox's issuer), its claims are decoded and
compared with the live provider (URL, audiences, thumbprints) and the role's trust policy, one
condition at a time, and the exchange is tried to quote STS's answer. Each mismatch is named.

**Plan/Act** (:func:`actions`): an apply of global targeted at ``module.github_oidc``. Why an apply
and not the three API calls that undo the change: the code is what the provider and the trust should
say, and the apply is what makes state, code and account agree again (a hand-made fix would be drift
in its turn). Why targeted: the trouble is the trust alone, and an untargeted apply of global would
also carry any other pending change of global (its state bucket, lock table, artifact bucket) into an
identity fix made in a hurry; Terraform's own guidance keeps ``-target`` for such repairs. The plan
that the Plan step shows is that targeted plan; when it has no changes while the token is still
refused, the code itself is wrong, and the runbook stops rather than apply nothing.

**Verify** (:func:`verify_exchange`): a fresh token is exchanged for the role's credentials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from labkit import sandbox
from labkit.errors import RunbookError, WebIdentityRejected
from labkit.identity import jwt, webidentity
from labkit.identity.credentials import (
    assume_role_with_web_identity,
)
from labkit.identity.github import STS_AUDIENCE, parse_subject
from labkit.identity.policy import as_list, statements
from labkit.infra.stack import Stack
from labkit.infra.terraform import PlanResult
from labkit.ops.runbook import Action
from labkit.target import Target

#: global's module that holds the OIDC provider and the deploy role.
MODULE = "module.github_oidc"
PROVIDER_ADDRESS = "module.github_oidc[0].aws_iam_openid_connect_provider.github[0]"


@dataclass(frozen=True)
class DeployTrust:
    """What global's state says: the deploy role, its OIDC provider, and the subject it trusts."""

    role_arn: str
    provider_arn: str
    subject: str

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]


def deploy_trust(global_stack: Stack) -> DeployTrust:
    """The deploy role and OIDC provider that global's state holds; RunbookError when it holds none."""
    outputs = global_stack.outputs()
    role, subject = outputs.get("github_deploy_role_arn"), outputs.get("github_trusted_subject")
    if not role or not subject:
        raise RunbookError(
            "global's state has no GitHub deploy role: it was applied without github_repository.",
            hint="Apply global with the repository whose workflows deploy: "
            "`labkit stack apply global --var github_repository=OWNER/NAME` (see its variables.tf).",
        )
    provider = global_stack.state_attributes(PROVIDER_ADDRESS)["arn"]
    return DeployTrust(role_arn=str(role), provider_arn=str(provider), subject=str(subject))


def job_token(target: Target, subject: str, audience: str = STS_AUDIENCE) -> str:
    """An ID token as the deploy job gets it: from GitHub inside Actions, else from the sandbox's
    issuer for a run whose ``sub`` is ``subject``."""
    return sandbox.id_token(target, parse_subject(subject), audience=audience)


@dataclass(frozen=True)
class TrustFinding:
    """The token's claims against the live provider and trust policy; ``mismatches`` names each
    disagreement, ``refusal`` is STS's answer to the exchange (None: it was accepted)."""

    trust: DeployTrust
    claims: dict[str, Any]
    mismatches: tuple[str, ...]
    refusal: str | None
    provider: webidentity.OidcProvider | None = field(repr=False, default=None)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.refusal is None

    def __str__(self) -> str:
        # Mismatches first: the audit record keeps a step's first 300 characters.
        sub, aud, iss = (self.claims.get(name) for name in ("sub", "aud", "iss"))
        claims = f"token sub={sub!r} aud={aud!r} iss={iss!r}"
        if self.ok:
            return f"{self.trust.role_name} admits the {claims}"
        found = "; ".join(self.mismatches) or "no mismatch found in the provider or trust policy"
        return f"{found}; {claims}; STS: {self.refusal}"


def inspect(global_stack: Stack) -> TrustFinding:
    """Request the deploy job's token and name why the deploy role would refuse it (reads only)."""
    target = global_stack.target
    trust = deploy_trust(global_stack)
    token = job_token(target, trust.subject)
    _, claims = jwt.decode_unverified(token)
    provider = _provider(target, trust.provider_arn)
    policy = _trust_policy(target, trust.role_name)
    thumbprint = sandbox.oidc_issuer(target).thumbprint if target.is_sandbox else None
    mismatches = compare(claims, trust, provider, policy, issuer_thumbprint=thumbprint)
    try:
        assume_role_with_web_identity(target, trust.role_arn, token, session_name="fix-oidc-trust")
        refusal = None
    except WebIdentityRejected as refused:
        refusal = refused.message
    return TrustFinding(trust, claims, tuple(mismatches), refusal, provider)


def compare(
    claims: dict[str, Any],
    trust: DeployTrust,
    provider: webidentity.OidcProvider | None,
    trust_policy: str | None,
    *,
    issuer_thumbprint: str | None,
) -> list[str]:
    """Each way the provider or the trust policy disagrees with the token's ``claims``, in the
    order STS checks them. ``issuer_thumbprint`` None: not checked (AWS trusts GitHub's issuer by
    its own CA library and ignores the thumbprints)."""
    found: list[str] = []
    issuer = webidentity.issuer_host_path(str(claims.get("iss") or ""))
    audiences = as_list(claims.get("aud"))
    if provider is None:
        found.append(f"the OIDC provider {trust.provider_arn} does not exist")
    else:
        if provider.url != issuer:
            found.append(f"the provider's URL is {provider.url!r}, the token's issuer {issuer!r}")
        if not set(audiences) & set(provider.client_ids):
            found.append(
                f"the token's aud {audiences} is not among the provider's audiences (client ids) "
                f"{list(provider.client_ids)}"
            )
        lowered = {t.lower() for t in provider.thumbprints}
        if issuer_thumbprint is not None and issuer_thumbprint.lower() not in lowered:
            found.append(
                f"the issuer's CA thumbprint {issuer_thumbprint} is not among the provider's thumbprints "
                f"{list(provider.thumbprints)}"
            )
    if trust_policy is None:
        found.append(f"the role {trust.role_name} does not exist")
    elif provider is not None:
        found += _trust_mismatches(trust_policy, provider, claims)
    return found


def _trust_mismatches(policy: str, provider: webidentity.OidcProvider, claims: dict[str, Any]) -> list[str]:
    """The trust policy's principal and conditions that do not admit ``claims``: each statement that
    allows the web identity action is tried alone, then with one condition at a time, so the
    evaluation stays :func:`labkit.identity.webidentity.trusts`'s."""
    if webidentity.trusts(policy, provider, claims):
        return []
    allowing = [
        s
        for s in statements(policy)
        if s.get("Effect") == "Allow" and webidentity.ACTION in as_list(s.get("Action"))
    ]
    if not allowing:
        return [f"no statement of the trust policy allows {webidentity.ACTION}"]
    found: list[str] = []
    for statement in allowing:
        bare = {k: v for k, v in statement.items() if k != "Condition"}
        if not _admits(bare, provider, claims):
            federated = as_list((statement.get("Principal") or {}).get("Federated"))
            found.append(f"the trust policy's Federated principal is {federated}, not {provider.arn}")
            continue
        for operator, keys in (statement.get("Condition") or {}).items():
            for key, values in keys.items():
                if not _admits({**bare, "Condition": {operator: {key: values}}}, provider, claims):
                    claim = key.rsplit(":", 1)[-1]
                    found.append(
                        f"the trust policy's {operator} on {key} admits {as_list(values)}; "
                        f"the token's {claim} is {claims.get(claim)!r}"
                    )
    return found


def _admits(statement: dict[str, Any], provider: webidentity.OidcProvider, claims: dict[str, Any]) -> bool:
    return webidentity.trusts(
        json.dumps({"Version": "2012-10-17", "Statement": [statement]}), provider, claims
    )


def _provider(target: Target, arn: str) -> webidentity.OidcProvider | None:
    try:
        found = target.client("iam").get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchEntity", "NoSuchEntityException"):
            return None
        raise
    return webidentity.OidcProvider(
        arn, str(found["Url"]), tuple(found.get("ClientIDList", [])), tuple(found.get("ThumbprintList", []))
    )


def _trust_policy(target: Target, role_name: str) -> str | None:
    try:
        role = target.client("iam").get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise
    document = role["AssumeRolePolicyDocument"]
    return document if isinstance(document, str) else json.dumps(document)


# --- Plan, Act, Verify ---


def actions(global_stack: Stack, finding: TrustFinding) -> list[Action]:
    """The targeted apply of global that restores the provider and the trust; none when the token is
    accepted. RunbookError when the code's plan changes nothing but the token is refused."""
    if finding.ok:
        return []
    plan = plan_module(global_stack)
    if not plan.has_changes:
        raise RunbookError(
            f"The deploy job's token is refused ({finding.refusal}), yet global's code, planned for "
            f"{MODULE}, changes nothing: the code itself says what is refused.",
            hint="Read the mismatches above and fix terraform/modules/github_oidc or global's variables "
            "(github_repository, github_subject); then plan global.",
        )
    return [targeted_apply(global_stack, plan)]


def plan_module(global_stack: Stack) -> PlanResult:
    """A plan of global targeted at :data:`MODULE`: global's GitHub settings as last applied
    (Stack.variables carries them over), on its code."""
    return global_stack.plan(targets=[MODULE])


def targeted_apply(global_stack: Stack, plan: PlanResult) -> Action:
    """The apply of global's code for :data:`MODULE`, described by ``plan`` (:func:`plan_module`'s);
    the apply plans again, so it applies what the code says at that moment."""
    changed = ", ".join(f"{c.action} {c.address}" for c in plan.changes)
    return Action(f"terraform apply -target={MODULE} on global ({changed})", _apply(global_stack))


def _apply(global_stack: Stack) -> Callable[[], object]:
    def run() -> str:
        done = global_stack.apply(targets=[MODULE])
        return f"{done.added} added, {done.changed} changed, {done.removed} destroyed in {done.seconds:.0f} s"

    return run


def verify_exchange(global_stack: Stack) -> tuple[bool, str]:
    """A fresh token for the trusted subject is exchanged for the deploy role's credentials."""
    trust = deploy_trust(global_stack)
    token = job_token(global_stack.target, trust.subject)
    try:
        found = assume_role_with_web_identity(
            global_stack.target, trust.role_arn, token, session_name="fix-oidc-trust-verify"
        )
    except WebIdentityRejected as refused:
        return False, refused.message
    return True, f"{trust.subject} assumed {found.assumed_role_arn} until {found.expiration:%H:%M:%S}"


def verify_matches_code(global_stack: Stack) -> tuple[bool, str]:
    """A plan of global targeted at the GitHub module shows no changes."""
    plan = plan_module(global_stack)
    return (not plan.has_changes), plan.summary()
