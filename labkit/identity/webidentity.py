"""What STS checks before AssumeRoleWithWebIdentity hands out credentials, with AWS's answers.

In AWS's order: the token is a JWT; the account has an IAM OIDC provider whose URL is the token's
``iss``; the token's ``aud`` is in the provider's client id list; the issuer's certificate matches a
thumbprint of the provider; the signature verifies with the issuer's published keys; the token
has not expired; and the role's trust policy admits the provider (``Federated`` principal) with
conditions on ``<provider url>:aud`` and ``<provider url>:sub``. The first failure is raised as
:class:`~labkit.errors.WebIdentityRejected` with AWS's error code.

The thumbprint: for an issuer AWS does not already trust, IAM compares the provider's thumbprints
with the SHA-1 of the top intermediate CA certificate of the issuer's HTTPS chain. The sandbox
serves its issuer over plain HTTP on loopback, so it has no chain; it makes a self-signed CA
certificate with the issuer and checks that certificate's SHA-1 instead (:class:`IssuerKeys`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.errors import IdentityError, WebIdentityRejected
from labkit.identity import jwt
from labkit.identity.policy import Decision, Request, as_list, evaluate

ACTION = "sts:AssumeRoleWithWebIdentity"
#: AWS's documented description of InvalidIdentityToken, used where no more specific message is known.
NOT_VALIDATED = (
    "The web identity token that was passed could not be validated by AWS. Get a new identity token from "
    "the identity provider and then retry the request."
)


@dataclass(frozen=True)
class OidcProvider:
    """An IAM OIDC provider: ``url`` as IAM keeps it (host and path, no scheme)."""

    arn: str
    url: str
    client_ids: tuple[str, ...]
    thumbprints: tuple[str, ...]


@dataclass(frozen=True)
class IssuerKeys:
    """What STS reads from an issuer: its JWK set, and the SHA-1 of its top CA certificate."""

    jwks: list[dict[str, Any]]
    ca_thumbprint: str


def thumbprint(certificate_der: bytes) -> str:
    """An IAM OIDC thumbprint: the certificate's SHA-1, 40 lowercase hex digits."""
    return hashlib.sha1(certificate_der, usedforsecurity=False).hexdigest()


def issuer_host_path(url: str) -> str:
    """An issuer URL as IAM keys providers and condition keys: without the scheme or a trailing slash."""
    return url.split("://", 1)[-1].rstrip("/")


def check(
    token: str,
    *,
    trust_policy: str | None,
    providers: Sequence[OidcProvider],
    keys_for: Callable[[str], IssuerKeys | None],
    now: int,
) -> dict[str, Any]:
    """The token's claims when STS would accept it for a role with ``trust_policy`` (None: no such
    role); else :class:`WebIdentityRejected`. ``keys_for(iss)`` reads the issuer's keys."""
    try:
        _, claims = jwt.decode_unverified(token)
    except IdentityError:
        raise _invalid(
            "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
        ) from None
    issuer = str(claims.get("iss") or "")
    provider = next((p for p in providers if p.url == issuer_host_path(issuer)), None)
    if provider is None:
        raise _invalid(f"No OpenIDConnect provider found in your account for {issuer}")
    audiences = as_list(claims.get("aud"))
    if not set(audiences) & set(provider.client_ids):
        raise _invalid("Incorrect token audience")
    keys = keys_for(issuer)
    if keys is None:
        raise _invalid(
            "Couldn't retrieve verification key from your identity provider, please reference "
            "AssumeRoleWithWebIdentity documentation for requirements"
        )
    if keys.ca_thumbprint.lower() not in {t.lower() for t in provider.thumbprints}:
        raise _invalid("OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint")
    if not jwt.signature_valid(token, keys.jwks):
        raise _invalid(NOT_VALIDATED)
    expires = _epoch(claims.get("exp"))
    if expires is None or now >= expires:
        raise WebIdentityRejected(
            "ExpiredTokenException",
            f"Token expired: current date/time {now} must be before the expiration date/time {expires}",
            hint="Request a new ID token; they are valid for minutes.",
        )
    not_before = _epoch(claims.get("nbf", claims.get("iat")))
    if not claims.get("sub") or (not_before is not None and not_before > now + 60):
        raise WebIdentityRejected(
            "IDPRejectedClaim",
            "The identity provider (IdP) reported that authentication failed. This might be because the "
            "claim is invalid.",
            hint="The token has no sub, or is not valid yet (nbf/iat in the future): request a new one.",
        )
    if trust_policy is None or not trusts(trust_policy, provider, claims):
        raise WebIdentityRejected(
            "AccessDenied",
            f"Not authorized to perform {ACTION}",
            hint="Compare the token's aud and sub (`labkit ci token`) with the role's trust policy "
            "conditions, and its Federated principal with the OIDC provider's ARN.",
        )
    return claims


def trusts(trust_policy: str, provider: OidcProvider, claims: dict[str, Any]) -> bool:
    """Whether the trust policy admits a token with ``claims`` from ``provider``."""
    context = {
        f"{provider.url}:aud".lower(): as_list(claims.get("aud")),
        f"{provider.url}:sub".lower(): as_list(claims.get("sub")),
    }
    request = Request(action=ACTION, resource=None, context=context, principal={"Federated": [provider.arn]})
    return evaluate([trust_policy], request) is Decision.ALLOWED


def _invalid(message: str) -> WebIdentityRejected:
    return WebIdentityRejected(
        "InvalidIdentityToken",
        message,
        hint="Check the IAM OIDC provider (URL, client ids, thumbprints) against the token's issuer "
        "and audience.",
    )


def _epoch(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
