"""Where the lab runs: the offline ``sandbox`` or a real ``aws`` account.

Everything that talks to AWS (boto3, Terraform, the probe) gets its clients and its subprocess
environment from a :class:`Target`, so notebooks never branch on the target themselves.

A Target is a plain value: building one starts nothing and reaches nothing. Whoever needs a running
sandbox starts it first, with ``labkit.sandbox.ensure_up()``; ``labkit.sandbox.target()`` does that
and returns the sandbox's Target.

- sandbox: every call goes to a loopback endpoint with fixed test credentials (the sandbox's admin),
  or with the ``credentials`` of an IAM identity in the sandbox (:meth:`Target.as_identity`: a role's
  temporary credentials, to prove what the role may do where IAM is enforced). An endpoint that
  is not on loopback is refused, so nothing reaches a real account by mistake.
- aws: the standard credential chain (profile, SSO, environment, OIDC role), nothing
  overridden; creating anything billable needs ``allow_spend=True``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from labkit.errors import SpendNotAllowedError, TargetError

if TYPE_CHECKING:
    import boto3

TargetName = Literal["sandbox", "aws"]
TARGET_NAMES: tuple[TargetName, ...] = ("sandbox", "aws")

#: The sandbox is one region with fixed credentials: moto does not check signatures, and fixed
#: values make every run reproducible.
SANDBOX_REGION = "us-east-1"
SANDBOX_ACCESS_KEY = "test"
SANDBOX_SECRET_KEY = "test"  # a fixed placeholder that only moto accepts

# Shared clients, keyed by (target, service), and under (target, _SESSION) the one boto3 session
# each target's clients come from. Sessions are not thread-safe, hence the lock around every use.
_CLIENTS: dict[tuple[Target, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_SESSION = "(session)"

# Variables that would send a subprocess somewhere other than the sandbox endpoint, or make it
# sign as a real identity. They are removed from the sandbox's subprocess environment.
_AWS_ROUTING_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def is_loopback_url(url: str) -> bool:
    """True when ``url`` is http(s) on 127.0.0.0/8, ::1 or ``localhost``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    """Access key, secret and (for temporary credentials) session token of one IAM identity."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


#: Set for a runbook's kernel when its sandbox target calls as an IAM identity (labkit.ops.execute):
#: that identity's :class:`Credentials` as JSON, which ``labkit.sandbox.target()`` then calls as.
SANDBOX_IDENTITY_ENV = "LABKIT_SANDBOX_IDENTITY"


def credentials_to_env(credentials: Credentials) -> str:
    """``credentials`` as :data:`SANDBOX_IDENTITY_ENV` holds them."""
    return json.dumps(
        {
            "access_key_id": credentials.access_key_id,
            "secret_access_key": credentials.secret_access_key,
            "session_token": credentials.session_token,
        }
    )


def credentials_from_env() -> Credentials | None:
    """The identity :data:`SANDBOX_IDENTITY_ENV` names, or None (the sandbox's admin)."""
    value = os.environ.get(SANDBOX_IDENTITY_ENV, "").strip()
    if not value:
        return None
    try:
        found = json.loads(value)
        return Credentials(
            str(found["access_key_id"]), str(found["secret_access_key"]), found.get("session_token")
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TargetError(
            f"{SANDBOX_IDENTITY_ENV} holds no credentials labkit can read.",
            hint="labkit sets it for a runbook's kernel; unset it to call the sandbox as its admin.",
        ) from None


@dataclass(frozen=True)
class Target:
    """A place the lab runs. Build one with :func:`get_target`, :func:`sandbox` or :func:`aws`.

    ``alb_urls`` maps an ALB's DNS name to the loopback URL of its listener; only the sandbox needs
    one (``labkit.sandbox.target()`` passes ``labkit.sandbox.alb_url``), as its DNS names do not
    resolve. It takes no part in comparing or hashing targets.
    """

    name: TargetName
    region: str
    endpoint_url: str | None = None
    profile: str | None = None
    allow_spend: bool = False
    alb_urls: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    #: Sandbox only: call as this identity instead of the sandbox's admin.
    credentials: Credentials | None = None

    def __post_init__(self) -> None:
        if self.name not in TARGET_NAMES:
            raise TargetError(
                f"Unknown target {self.name!r}.", hint=f"Use one of: {', '.join(TARGET_NAMES)}."
            )
        if self.name == "sandbox":
            if not self.endpoint_url or not is_loopback_url(self.endpoint_url):
                raise TargetError(
                    f"The sandbox endpoint {self.endpoint_url!r} is not a loopback URL.",
                    hint="The sandbox only talks to http://127.0.0.1:PORT; start it with "
                    "`labkit sandbox up` and let labkit find the endpoint.",
                )
        elif self.credentials is not None:
            raise TargetError(
                "The aws target takes its credentials from the standard chain, not from the Target.",
                hint="Export them (`eval \"$(labkit ci credentials ...)\"`) or use a profile.",
            )
        elif self.endpoint_url is not None:
            raise TargetError(
                "The aws target takes no endpoint_url: it uses AWS's own endpoints.",
                hint="Drop endpoint_url, or use target='sandbox' for a loopback endpoint.",
            )

    @property
    def is_sandbox(self) -> bool:
        return self.name == "sandbox"

    def as_identity(self, credentials: Credentials | None) -> Target:
        """This sandbox target calling as the identity that holds ``credentials`` (None: the admin)."""
        return replace(self, credentials=credentials)

    def _keys(self) -> Credentials:
        return self.credentials or Credentials(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY)

    def session(self) -> boto3.session.Session:
        """A new boto3 session for this target."""
        import boto3  # here, not at the top: `labkit --help` need not load boto3

        if self.is_sandbox:
            keys = self._keys()
            return boto3.session.Session(
                aws_access_key_id=keys.access_key_id,
                aws_secret_access_key=keys.secret_access_key,
                aws_session_token=keys.session_token,
                region_name=self.region,
            )
        return boto3.session.Session(profile_name=self.profile, region_name=self.region)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` on this target (path-style S3 in the sandbox).

        Clients without extra options are made once per target and service and shared (boto3
        clients are safe to share between threads), all from one session per target: each new
        session loads botocore's endpoint and partition data again, which made a client cost
        about four times as much CPU (a lesson's kernel or a command makes eight or so).
        """
        with _CLIENTS_LOCK:
            if kwargs:
                return self._new_client(service, **kwargs)
            key = (self, service)
            if key not in _CLIENTS:
                _CLIENTS[key] = self._new_client(service)
            return _CLIENTS[key]

    def _new_client(self, service: str, **kwargs: Any) -> Any:
        """A new client from the target's shared session (call with ``_CLIENTS_LOCK`` held)."""
        if self.is_sandbox:
            from botocore.config import Config

            kwargs.setdefault("endpoint_url", self.endpoint_url)
            # proxies={}: botocore would otherwise send loopback calls to HTTP(S)_PROXY, and the
            # sandbox's traffic (and its fixed credentials) to a machine that is not this one.
            base = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, proxies={})
            kwargs["config"] = base.merge(kwargs["config"]) if kwargs.get("config") else base
        session = _CLIENTS.get((self, _SESSION))
        if session is None:
            session = _CLIENTS[(self, _SESSION)] = self.session()
        return session.client(service, **kwargs)  # type: ignore[call-overload]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a subprocess (Terraform, the AWS CLI) that must reach this target."""
        env = dict(os.environ if base is None else base)
        if not self.is_sandbox:
            env.setdefault("AWS_REGION", self.region)
            env.setdefault("AWS_DEFAULT_REGION", self.region)
            if self.profile:
                env["AWS_PROFILE"] = self.profile
            return env
        for var in _AWS_ROUTING_VARS:
            env.pop(var, None)
        # A per-service endpoint (AWS_ENDPOINT_URL_S3, ...) would win over the global one.
        for var in [v for v in env if v.startswith("AWS_ENDPOINT_URL_")]:
            env.pop(var)
        keys = self._keys()
        if keys.session_token:
            env["AWS_SESSION_TOKEN"] = keys.session_token
        env.update(
            AWS_ENDPOINT_URL=cast(str, self.endpoint_url),
            AWS_ACCESS_KEY_ID=keys.access_key_id,
            AWS_SECRET_ACCESS_KEY=keys.secret_access_key,
            AWS_REGION=self.region,
            AWS_DEFAULT_REGION=self.region,
            AWS_EC2_METADATA_DISABLED="true",
        )
        # The endpoint is on loopback: a configured proxy must not see the sandbox's calls.
        for var in ("NO_PROXY", "no_proxy"):
            env[var] = ",".join(filter(None, [env.get(var, ""), "127.0.0.1", "localhost", "::1"]))
        return env

    def alb_url(self, dns_name: str) -> str:
        """The URL that reaches an ALB's HTTP listener: its loopback port in the sandbox (where the
        DNS name does not resolve), plain ``http://DNS_NAME`` on AWS."""
        if not self.is_sandbox:
            return f"http://{dns_name}"
        if self.alb_urls is None:
            raise TargetError(
                f"This sandbox target cannot map {dns_name} to a loopback URL: it was built without "
                "the sandbox's map.",
                hint="Build it with labkit.sandbox.target() (notebooks: lesson.open_target), or pass "
                "alb_urls=labkit.sandbox.alb_url.",
            )
        return self.alb_urls(dns_name)

    def require_spend(self, action: str) -> None:
        """Refuse ``action`` on AWS unless this target was made with ``allow_spend=True``."""
        if not self.is_sandbox and not self.allow_spend:
            raise SpendNotAllowedError(
                f"Refusing to {action} on AWS: it creates resources that cost money.",
                hint="Pass allow_spend=True (notebooks: the `allow_spend` parameter; CLI: --allow-spend) "
                "once you accept the cost, and run the teardown notebook when you are done.",
            )


def sandbox(endpoint_url: str, *, alb_urls: Callable[[str], str] | None = None) -> Target:
    """The sandbox target at ``endpoint_url`` (``labkit.sandbox.ensure_up()`` starts the sandbox and
    returns it; ``labkit.sandbox.target()`` does both)."""
    return Target(name="sandbox", region=SANDBOX_REGION, endpoint_url=endpoint_url, alb_urls=alb_urls)


def check_sandbox_region(region: str | None) -> None:
    """Refuse a region other than the sandbox's own (it is one region)."""
    if region not in (None, SANDBOX_REGION):
        raise TargetError(
            f"The sandbox is one region, {SANDBOX_REGION}; {region!r} was asked for.",
            hint="Drop the region for the sandbox.",
        )


def aws(region: str | None = None, *, profile: str | None = None, allow_spend: bool = False) -> Target:
    """A real AWS account through the standard credential chain."""
    import boto3

    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or boto3.session.Session(profile_name=profile).region_name
    )
    if not region:
        raise TargetError(
            "No AWS region is set for the aws target.",
            hint="Pass region='eu-west-1' (for example), or set AWS_REGION or a region in your profile.",
        )
    return Target(name="aws", region=region, profile=profile, allow_spend=allow_spend)


def get_target(
    name: str = "sandbox",
    *,
    region: str | None = None,
    profile: str | None = None,
    allow_spend: bool = False,
    endpoint_url: str | None = None,
    alb_urls: Callable[[str], str] | None = None,
) -> Target:
    """The target called ``name`` ("sandbox" or "aws"). The sandbox's needs its ``endpoint_url``:
    ``labkit.sandbox.target()`` starts the sandbox and builds it."""
    if name == "sandbox":
        check_sandbox_region(region)
        if endpoint_url is None:
            raise TargetError(
                "The sandbox target needs the sandbox's endpoint URL.",
                hint="Use labkit.sandbox.target(), which starts the sandbox (labkit.sandbox.ensure_up()) "
                "and fills it in.",
            )
        return sandbox(endpoint_url, alb_urls=alb_urls)
    if name == "aws":
        if endpoint_url is not None:
            raise TargetError(
                "The aws target takes no endpoint_url.", hint="Use target='sandbox' for a loopback endpoint."
            )
        return aws(region, profile=profile, allow_spend=allow_spend)
    raise TargetError(f"Unknown target {name!r}.", hint=f"Use one of: {', '.join(TARGET_NAMES)}.")
