"""GitHub's OIDC flow from the job's side: request an ID token, exchange it for a role's temporary
credentials (STS AssumeRoleWithWebIdentity), and hand them on in a form a shell or Actions reads.

A GitHub Actions job with ``permissions: id-token: write`` gets two variables:
``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; a GET of the URL with
``&audience=...`` and the token as a bearer answers ``{"value": "<ID token>"}``. The sandbox's
issuer answers the same request at ``<issuer>/token`` (:mod:`labkit.sandbox.server.oidc`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode

from labkit.errors import IdentityError, WebIdentityRejected

if TYPE_CHECKING:
    from labkit.target import Credentials, Target

REQUEST_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
Format = Literal["env", "github-env", "json"]


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    assumed_role_arn: str

    def as_target_credentials(self) -> Credentials:
        """For :meth:`labkit.target.Target.as_identity`: call the sandbox as the assumed role."""
        from labkit.target import Credentials

        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)

    def variables(self) -> dict[str, str]:
        """The standard AWS environment variables that every SDK and the AWS CLI read."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


def actions_token_request() -> tuple[str, str] | None:
    """(URL, bearer token) when this runs in a GitHub Actions job allowed to request ID tokens."""
    url, bearer = os.environ.get(REQUEST_URL_ENV, ""), os.environ.get(REQUEST_TOKEN_ENV, "")
    return (url, bearer) if url and bearer else None


def request_id_token(
    url: str, params: dict[str, str], *, bearer: str | None = None, timeout: float = 15
) -> str:
    """GET ``url`` with ``params`` added to its query (and the bearer token); the ID token it answers."""
    separator = "&" if "?" in url else "?"
    request = urllib.request.Request(url + separator + urlencode(params))
    if bearer:
        request.add_header("Authorization", f"bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise IdentityError(
            f"The ID token request to {url} failed with HTTP {exc.code}: {exc.read()[:300]!r}",
            hint="In Actions, the job needs `permissions: id-token: write`; on the sandbox, check the claims "
            "asked for.",
        ) from exc
    except (OSError, ValueError) as exc:
        raise IdentityError(f"No ID token from {url}: {exc}", hint="Is the issuer reachable?") from exc
    token = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise IdentityError(f"{url} answered without a token ({str(answer)[:200]}).", hint="Check the URL.")
    return token


def assume_role_with_web_identity(
    target: Target, role_arn: str, token: str, *, session_name: str, duration_s: int = 3600
) -> TemporaryCredentials:
    """Exchange ``token`` for ``role_arn``'s credentials (an unsigned STS call, as on AWS);
    :class:`WebIdentityRejected` with STS's code when it refuses."""
    from botocore.exceptions import ClientError

    try:
        answer = target.client("sts").assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token, DurationSeconds=duration_s
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise WebIdentityRejected(
            str(error.get("Code", "Unknown")),
            f"AssumeRoleWithWebIdentity for {role_arn} was refused: {error.get('Code')}: "
            f"{error.get('Message')}",
            hint="`labkit ci token` prints the token's claims; compare them with the role's trust policy "
            "and the IAM OIDC provider.",
        ) from exc
    found = answer["Credentials"]
    return TemporaryCredentials(
        access_key_id=found["AccessKeyId"],
        secret_access_key=found["SecretAccessKey"],
        session_token=found["SessionToken"],
        expiration=found["Expiration"],
        assumed_role_arn=answer["AssumedRoleUser"]["Arn"],
    )


def render(credentials: TemporaryCredentials, form: Format) -> str:
    """The credentials as text: ``env``, shell ``export`` lines (``eval "$(...)"``); ``json``, the
    ``credential_process`` document of the AWS config file; ``github-env``, ``NAME=value`` lines for
    the file that ``$GITHUB_ENV`` names (see :func:`github_masks` for what to print)."""
    if form == "json":
        return json.dumps(
            {
                "Version": 1,
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
                "Expiration": credentials.expiration.isoformat(),
            },
            indent=2,
        )
    if form == "github-env":
        return "".join(f"{name}={value}\n" for name, value in credentials.variables().items())
    return "".join(f"export {name}='{value}'\n" for name, value in credentials.variables().items())


def github_masks(credentials: TemporaryCredentials) -> str:
    """Workflow commands that make Actions hide the secret parts in every later log line."""
    return "".join(f"::add-mask::{v}\n" for v in credentials.variables().values())
