"""ID tokens (labkit.identity.jwt, .github, .issuer) and STS's web identity checks (.webidentity)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from labkit.errors import IdentityError, WebIdentityRejected
from labkit.identity import jwt, webidentity
from labkit.identity.github import WorkflowRun, parse_subject
from labkit.identity.issuer import Issuer

URL = "https://localhost/labkit-sandbox/oidc"
HOST_PATH = "localhost/labkit-sandbox/oidc"
NOW = 1_800_000_000
PROVIDER_ARN = f"arn:aws:iam::123456789012:oidc-provider/{HOST_PATH}"
DEVELOP = WorkflowRun("octo/lab", ref="refs/heads/develop")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer.load_or_create(tmp_path_factory.mktemp("issuer"), URL)


def trust_policy(sub: str, *, test: str = "StringEquals", principal: str = PROVIDER_ARN) -> str:
    conditions = {"StringEquals": {f"{HOST_PATH}:aud": "sts.amazonaws.com"}, test: {f"{HOST_PATH}:sub": sub}}
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": principal},
        "Condition": conditions,
    }]})  # fmt: skip


def provider(issuer: Issuer, **changes: Any) -> webidentity.OidcProvider:
    fields: dict[str, Any] = {"arn": PROVIDER_ARN, "url": HOST_PATH, "client_ids": ("sts.amazonaws.com",),
                              "thumbprints": (issuer.thumbprint,)}  # fmt: skip
    return webidentity.OidcProvider(**{**fields, **changes})


def signed_by_another_key(claims: dict[str, Any], *, kid: str) -> str:
    """A token that names the issuer's key id but is signed with another key."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = ".".join(jwt.b64url(json.dumps(part).encode()) for part in (header, claims))
    signature = jwt.SigningKey.generate().private_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{jwt.b64url(signature)}"


def check(issuer: Issuer, token: str, trust: str | None = None, **provider_changes: Any) -> dict[str, Any]:
    return webidentity.check(
        token,
        trust_policy=trust_policy("repo:octo/lab:ref:refs/heads/develop") if trust is None else trust,
        providers=[provider(issuer, **provider_changes)],
        keys_for=lambda url: issuer.keys() if url == URL else None,
        now=NOW,
    )


def test_a_signed_token_verifies_and_a_changed_one_does_not(issuer: Issuer) -> None:
    token = issuer.token(DEVELOP, audience="sts.amazonaws.com", now=NOW)
    header, claims = jwt.decode_unverified(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": issuer.key.kid}
    assert jwt.signature_valid(token, issuer.jwks()["keys"])
    head, _, signature = token.split(".")
    changed = jwt.b64url(json.dumps({**claims, "sub": "repo:octo/lab:ref:refs/heads/main"}).encode())
    assert not jwt.signature_valid(f"{head}.{changed}.{signature}", issuer.jwks()["keys"])
    assert not jwt.signature_valid(signed_by_another_key(claims, kid=issuer.key.kid), issuer.jwks()["keys"])


@pytest.mark.parametrize("bad", ["", "a.b", "not.a.token", "e30.W10.sig"])
def test_what_is_not_a_jwt_is_refused(bad: str) -> None:
    with pytest.raises(IdentityError, match="not a JSON Web Token"):
        jwt.decode_unverified(bad)


def test_claims_are_githubs(issuer: Issuer) -> None:
    run = WorkflowRun(
        "octo/lab", ref="refs/heads/main", environment="staging", workflow=".github/workflows/deploy.yml"
    )
    claims = jwt.decode_unverified(issuer.token(run, audience="sts.amazonaws.com", now=NOW, ttl_s=300))[1]
    assert claims["sub"] == "repo:octo/lab:environment:staging"
    assert claims["iss"] == URL
    assert claims["aud"] == "sts.amazonaws.com"
    assert (claims["iat"], claims["exp"]) == (NOW, NOW + 300)
    assert claims["repository"] == "octo/lab"
    assert claims["repository_owner"] == "octo"
    assert claims["ref"] == "refs/heads/main"
    assert claims["environment"] == "staging"
    assert claims["job_workflow_ref"] == "octo/lab/.github/workflows/deploy.yml@refs/heads/main"


@pytest.mark.parametrize(
    "subject",
    [
        "repo:octo/lab:environment:staging",
        "repo:octo/lab:ref:refs/heads/develop",
        "repo:octo/lab:pull_request",
    ],
)
def test_subjects_round_trip(subject: str) -> None:
    assert parse_subject(subject).subject == subject


@pytest.mark.parametrize("bad", [{"repository": "octo"}, {"repository": "octo/lab", "ref": "develop"}])
def test_a_run_needs_a_full_repository_name_and_ref(bad: dict[str, str]) -> None:
    with pytest.raises(IdentityError):
        WorkflowRun(**bad)


def test_the_issuer_keeps_its_key_and_certificate(tmp_path: Path) -> None:
    first = Issuer.load_or_create(tmp_path, URL)
    again = Issuer.load_or_create(tmp_path, URL)
    assert (again.key.kid, again.thumbprint) == (first.key.kid, first.thumbprint)
    assert len(first.thumbprint) == 40
    for found in tmp_path.iterdir():
        assert stat.S_IMODE(found.stat().st_mode) == 0o600
    assert first.discovery()["jwks_uri"] == URL + "/.well-known/jwks"


def test_sts_accepts_a_token_the_trust_admits(issuer: Issuer) -> None:
    token = issuer.token(DEVELOP, audience="sts.amazonaws.com", now=NOW)
    assert check(issuer, token)["sub"] == "repo:octo/lab:ref:refs/heads/develop"
    wildcard = trust_policy("repo:octo/lab:ref:refs/heads/*", test="StringLike")
    assert check(issuer, token, wildcard)["ref"] == "refs/heads/develop"


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("not a jwt", "InvalidIdentityToken", "not a valid JWT"),
        ("no provider", "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {URL}"),
        ("audience", "InvalidIdentityToken", "Incorrect token audience"),
        ("thumbprint", "InvalidIdentityToken", "doesn't match configured thumbprint"),
        ("signature", "InvalidIdentityToken", "could not be validated"),
        ("unreachable issuer", "InvalidIdentityToken", "Couldn't retrieve verification key"),
        ("expired", "ExpiredTokenException", "Token expired"),
        ("not yet valid", "IDPRejectedClaim", "authentication failed"),
        ("other branch", "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        ("other provider in the trust", "AccessDenied", "Not authorized"),
        ("no such role", "AccessDenied", "Not authorized"),
    ],
)
def test_sts_refuses_with_awss_codes(issuer: Issuer, case: str, code: str, message: str) -> None:
    token = issuer.token(DEVELOP, audience="sts.amazonaws.com", now=NOW)
    trust: str | None = None
    changes: dict[str, Any] = {}
    if case == "not a jwt":
        token = "opaque-access-token"
    elif case == "no provider":
        changes = {"url": "token.actions.githubusercontent.com"}
    elif case == "audience":
        token = issuer.token(DEVELOP, audience="https://github.com/octo", now=NOW)
    elif case == "thumbprint":
        changes = {"thumbprints": ("0" * 40,)}
    elif case == "signature":
        token = signed_by_another_key(jwt.decode_unverified(token)[1], kid=issuer.key.kid)
    elif case == "unreachable issuer":  # the provider's URL, but over http: no keys from there
        token = jwt.sign({**jwt.decode_unverified(token)[1], "iss": "http://" + HOST_PATH}, issuer.key)
    elif case == "expired":
        token = issuer.token(DEVELOP, audience="sts.amazonaws.com", now=NOW - 600, ttl_s=300)
    elif case == "not yet valid":
        token = issuer.token(DEVELOP, audience="sts.amazonaws.com", now=NOW + 600)
    elif case == "other branch":
        token = issuer.token(
            WorkflowRun("octo/lab", ref="refs/heads/feature"), audience="sts.amazonaws.com", now=NOW
        )
    elif case == "other provider in the trust":
        trust = trust_policy("repo:octo/lab:ref:refs/heads/develop", principal=PROVIDER_ARN + "-other")
    elif case == "no such role":
        with pytest.raises(WebIdentityRejected, match=message) as refused:
            webidentity.check(token, trust_policy=None, providers=[provider(issuer)],
                              keys_for=lambda _: issuer.keys(), now=NOW)  # fmt: skip
        assert refused.value.code == code
        return
    with pytest.raises(WebIdentityRejected, match=message) as refused:
        check(issuer, token, trust, **changes)
    assert refused.value.code == code
