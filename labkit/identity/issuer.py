"""An OIDC issuer of GitHub-style ID tokens: its keys, its discovery documents, and the tokens it signs.

The sandbox serves one (:mod:`labkit.sandbox.server.oidc`) so that GitHub's OIDC flow can run
offline. Its key and CA certificate are kept in a folder, so that tokens, the JWK set and the
thumbprint stay the same across restarts (the IAM OIDC provider that Terraform created keeps the
thumbprint). The CA certificate stands for the top of an HTTPS chain, which a loopback issuer
served over plain HTTP does not have: see :mod:`labkit.identity.webidentity`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from labkit.identity import jwt
from labkit.identity.github import DEFAULT_TTL_S, WorkflowRun
from labkit.identity.webidentity import IssuerKeys, thumbprint

KEY_FILE = "oidc-issuer-key.pem"
CA_FILE = "oidc-issuer-ca.pem"
#: Where an issuer publishes its keys, below its URL (GitHub's path).
JWKS_PATH = "/.well-known/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Issuer:
    """``url`` is the issuer's identifier (tokens' ``iss``, the IAM provider's URL); ``served_at``
    the base URL its documents are actually served from, when that differs (the sandbox's issuer is
    ``https://localhost/labkit-sandbox/oidc``, served as plain ``http://127.0.0.1:PORT/...``: IAM
    accepts only https issuers, and loopback has no certificate)."""

    url: str
    key: jwt.SigningKey
    ca_certificate: x509.Certificate
    served_at: str | None = None

    @classmethod
    def load_or_create(cls, folder: Path, url: str, *, served_at: str | None = None) -> Issuer:
        """The issuer at ``url``, its key and CA certificate kept in ``folder`` (made on first use, 0600)."""
        key_file, ca_file = folder / KEY_FILE, folder / CA_FILE
        if key_file.exists() and ca_file.exists():
            key = jwt.SigningKey.from_pem(key_file.read_bytes())
            return cls(url, key, x509.load_pem_x509_certificate(ca_file.read_bytes()), served_at)
        key = jwt.SigningKey.generate()
        certificate = _self_signed_ca(key)
        for path, data in (
            (key_file, key.to_pem()),
            (ca_file, certificate.public_bytes(serialization.Encoding.PEM)),
        ):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        return cls(url, key, certificate, served_at)

    @property
    def thumbprint(self) -> str:
        """What an IAM OIDC provider for this issuer lists as its thumbprint."""
        return thumbprint(self.ca_certificate.public_bytes(serialization.Encoding.DER))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}

    def keys(self) -> IssuerKeys:
        return IssuerKeys(jwks=self.jwks()["keys"], ca_thumbprint=self.thumbprint)

    def discovery(self) -> dict[str, Any]:
        """The ``openid-configuration`` document, with the fields GitHub's issuer publishes."""
        return {
            "issuer": self.url,
            "jwks_uri": (self.served_at or self.url) + JWKS_PATH,
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
                                 "repository_owner", "environment", "event_name", "ref_type", "sha",
                                 "workflow", "workflow_ref", "job_workflow_ref", "runner_environment"],
            "id_token_signing_alg_values_supported": [jwt.ALGORITHM],
            "scopes_supported": ["openid"],
        }  # fmt: skip

    def token(self, run: WorkflowRun, *, audience: str, now: int, ttl_s: int = DEFAULT_TTL_S) -> str:
        """A signed ID token for ``run``."""
        return jwt.sign(run.claims(issuer=self.url, audience=audience, now=now, ttl_s=ttl_s), self.key)


def _self_signed_ca(key: jwt.SigningKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labkit sandbox OIDC issuer CA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key.private_key, hashes.SHA256())
    )
