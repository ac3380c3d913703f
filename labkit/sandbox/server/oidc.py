"""The sandbox's GitHub-style OIDC issuer, and STS's AssumeRoleWithWebIdentity checking its tokens.

The issuer's URL (its tokens' ``iss``, the IAM OIDC provider's URL) is :data:`ISSUER_URL`, an https
URL because IAM accepts no other, without a port so that it stays the same when the API's port
changes (and because the AWS provider for Terraform cannot compare a provider URL that has a port
with the one IAM returns: it would replace the provider on every apply). The sandbox serves the
issuer as plain ``http://127.0.0.1:PORT/labkit-sandbox/oidc`` (its API's endpoint plus
:data:`~labkit.sandbox.client.paths.OIDC_PATH`), and STS reads its keys in process. Below it:

- ``GET .well-known/openid-configuration`` and ``GET .well-known/jwks``: discovery and keys, as
  GitHub's issuer publishes them;
- ``GET token?audience=...&repository=OWNER/REPO&ref=refs/heads/BRANCH&environment=...&event_name=...``:
  a signed ID token as ``{"value": ...}``, what GitHub Actions' ``ACTIONS_ID_TOKEN_REQUEST_URL``
  answers (``repository`` is required; the others default as in :class:`~labkit.identity.github.WorkflowRun`);
- ``GET ca.pem``: the issuer's CA certificate, whose SHA-1 is the thumbprint the IAM OIDC provider
  must list (also in the service's status, ``oidc.thumbprint``).

:func:`mend` makes STS's ``AssumeRoleWithWebIdentity`` validate its token
(:func:`labkit.identity.webidentity.check`) against the account's IAM OIDC providers and the role's
trust policy before moto hands out credentials, and answer as AWS does when it refuses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization

from labkit.errors import IdentityError, WebIdentityRejected
from labkit.identity import webidentity
from labkit.identity.github import STS_AUDIENCE, WorkflowRun
from labkit.identity.issuer import DISCOVERY_PATH, JWKS_PATH, Issuer
from labkit.sandbox.server.iam import answer_error

StartResponse = Callable[..., Any]
#: The sandbox issuer's identifier: what its tokens' ``iss`` and the IAM OIDC provider's URL hold.
ISSUER_URL = "https://localhost/labkit-sandbox/oidc"
#: AWS's HTTP status for each refusal of AssumeRoleWithWebIdentity.
_STATUS = {"AccessDenied": 403, "IDPRejectedClaim": 403}

_lock = threading.Lock()
_issuer: Issuer | None = None


def install(issuer: Issuer) -> None:
    """Make ``issuer`` the one whose tokens STS can verify (the sandbox's own)."""
    global _issuer
    with _lock:
        _issuer = issuer


def keys_for(issuer_url: str) -> webidentity.IssuerKeys | None:
    """The keys of the issuer at ``issuer_url``: the sandbox's own; no other issuer is reachable offline."""
    issuer = _issuer
    if issuer is None or issuer_url.rstrip("/") != issuer.url:
        return None
    return issuer.keys()


def serve(
    issuer: Issuer, sub_path: str, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    """Answer a GET below the issuer's URL (``sub_path`` starts with a slash)."""
    query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING") or "")).items()}
    status, content_type = "200 OK", "application/json"
    if sub_path == DISCOVERY_PATH:
        body = json.dumps(issuer.discovery()).encode()
    elif sub_path == JWKS_PATH:
        body = json.dumps(issuer.jwks()).encode()
    elif sub_path == "/ca.pem":
        body, content_type = (
            issuer.ca_certificate.public_bytes(serialization.Encoding.PEM),
            "application/x-pem-file",
        )
    elif sub_path == "/token":
        try:
            run = WorkflowRun(
                repository=query["repository"],
                ref=query.get("ref", "refs/heads/main"),
                environment=query.get("environment") or None,
                event_name=query.get("event_name", "push"),
            )
            token = issuer.token(run, audience=query.get("audience", STS_AUDIENCE), now=int(time.time()))
            body = json.dumps({"value": token}).encode()
        except (KeyError, IdentityError) as exc:
            why = exc.message if isinstance(exc, IdentityError) else f"missing parameter {exc}"
            status, body = "400 Bad Request", json.dumps({"message": why}).encode()
    else:
        status, body = "404 Not Found", json.dumps({"message": f"no such issuer path: {sub_path}"}).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def mend(patch: Callable[[type, str, object], None]) -> None:
    """Make STS's AssumeRoleWithWebIdentity check its token first (call before the first request)."""
    from moto.iam.models import iam_backends
    from moto.sts.responses import TokenResponse
    from moto.utilities.utils import get_partition

    stock = TokenResponse.assume_role_with_web_identity

    def assume_role_with_web_identity(self: Any) -> Any:
        iam = iam_backends[self.current_account][get_partition(self.region)]
        role_arn = str(self._get_param("RoleArn"))
        try:
            trust = iam.get_role_by_arn(role_arn).assume_role_policy_document
        except Exception:  # no such role: AWS answers as for a trust policy that does not admit the token
            trust = None
        providers = [
            webidentity.OidcProvider(p.arn, p.url, tuple(p.client_id_list), tuple(p.thumbprint_list))
            for p in list(iam.open_id_providers.values())
        ]
        try:
            webidentity.check(
                str(self._get_param("WebIdentityToken") or ""),
                trust_policy=trust,
                providers=providers,
                keys_for=keys_for,
                now=int(time.time()),
            )
        except WebIdentityRejected as refused:
            answer_error(self, refused.code, refused.message, _STATUS.get(refused.code, 400))
        return stock(self)

    patch(TokenResponse, "assume_role_with_web_identity", assume_role_with_web_identity)
