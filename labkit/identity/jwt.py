"""RS256 JSON Web Tokens and keys, with ``cryptography`` alone (RFC 7515, 7517, 7519).

Only what an OIDC issuer and its relying party need: sign claims with an RSA key, publish the
public key as a JWK, and verify a token's signature against a JWK set. Claims are checked by
:mod:`labkit.identity.webidentity`, which knows what AWS STS checks and how it answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from labkit.errors import IdentityError

ALGORITHM = "RS256"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _b64_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


@dataclass(frozen=True)
class SigningKey:
    """An RSA private key and its key id (the JWK ``kid``, a hash of the public key)."""

    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise IdentityError(
                "The issuer's key file holds no RSA key.", hint="Delete it; a new one is made."
            )
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def kid(self) -> str:
        numbers = self.private_key.public_key().public_numbers()
        return hashlib.sha256(f"{numbers.n}:{numbers.e}".encode()).hexdigest()[:16]

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "alg": ALGORITHM, "use": "sig", "kid": self.kid,
                "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}  # fmt: skip


def sign(claims: dict[str, Any], key: SigningKey) -> str:
    """The compact JWS of ``claims``, signed RS256 with ``key`` (its ``kid`` in the header)."""
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS, without checking anything; IdentityError when malformed."""
    parts = token.strip().split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three dot-separated parts")
        header, claims = (json.loads(b64url_decode(part)) for part in parts[:2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("header or claims are not JSON objects")
    except ValueError as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise IdentityError(
            f"This is not a JSON Web Token ({exc}).",
            hint="Pass the ID token itself: three base64url parts joined by dots.",
        ) from None
    return header, claims


def signature_valid(token: str, jwks: list[dict[str, Any]]) -> bool:
    """Whether ``token`` is RS256-signed by the key of ``jwks`` that its header's ``kid`` names."""
    header, _ = decode_unverified(token)
    if header.get("alg") != ALGORITHM:
        return False
    for jwk in jwks:
        if jwk.get("kty") != "RSA" or jwk.get("kid") != header.get("kid"):
            continue
        public = rsa.RSAPublicNumbers(_b64_int(jwk["e"]), _b64_int(jwk["n"])).public_key()
        signing_input, _, signature = token.strip().rpartition(".")
        try:
            public.verify(
                b64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return False
        return True
    return False
