"""The sandbox: an AWS region on loopback (moto's API, real app processes, a real load balancer).

One background service per LABKIT_HOME (``labkit sandbox up``), its files under
``labkit_home()/sandbox/``. This package is the client side's public surface (it imports only
:mod:`labkit.sandbox.client`; the service itself is :mod:`labkit.sandbox.server`):

- :func:`ensure_up`: start it unless it runs; its AWS endpoint URL. Every path that needs a running
  sandbox calls it (targets do not start anything themselves), so it is also where a failing save is
  told (stderr).
- :func:`target`: ``ensure_up()``, then the sandbox's :class:`~labkit.target.Target`.
- :func:`up`, :func:`down`, :func:`reset`, :func:`status`, :func:`describe_status`.
- :func:`alb_url`: an ALB's DNS name to the loopback URL of its HTTP listener.
- :func:`instances`: each instance's app process (port, pid, state), e.g. to crash one in a lesson.
- :func:`set_quota`: a service quota's value, lowered or raised (drills; AWS has no such API).
- :func:`set_iam_enforced`: IAM enforcement switched on or off in the running sandbox;
  :func:`oidc_issuer`: the URL and thumbprint of its OIDC issuer; :func:`id_token`: a workflow
  job's ID token (GitHub's in Actions, else the sandbox issuer's); :func:`recorded_calls`: the calls
  made with one access key (the sandbox's stand-in for CloudTrail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.errors import IdentityError, TargetError
from labkit.identity.github import STS_AUDIENCE, WorkflowRun
from labkit.sandbox.client.control import (
    OidcIssuer,
    SandboxStatus,
    alb_url,
    down,
    log_tail,
    reset,
    status,
    up,
    warn_if_unsaved,
)
from labkit.sandbox.client.control import oidc_issuer as _oidc_issuer
from labkit.sandbox.client.control import recorded_calls as _recorded_calls
from labkit.sandbox.client.control import set_iam_enforced as _set_iam_enforced
from labkit.sandbox.client.control import set_quota as _set_quota
from labkit.target import Target, check_sandbox_region, credentials_from_env, sandbox


def ensure_up(*, reset_state: bool = False, restore: Path | None = None) -> str:
    """Start the sandbox if it is not running and return its AWS endpoint URL; warn on stderr
    while the sandbox cannot save its AWS state (changes would be lost when it stops).

    ``reset_state`` and ``restore`` choose the AWS state a stopped sandbox starts from
    (:func:`labkit.sandbox.client.control.up`)."""
    endpoint = up(reset_state=reset_state, restore=restore)
    warn_if_unsaved(endpoint)
    return endpoint


def target(*, region: str | None = None) -> Target:
    """The sandbox's :class:`~labkit.target.Target`, with the sandbox started first (:func:`ensure_up`)
    and its ALB DNS names mapped to loopback URLs (:func:`alb_url`). A ``region`` other than the
    sandbox's is refused before anything starts. It calls as the sandbox's admin, or as the identity
    ``LABKIT_SANDBOX_IDENTITY`` names (a runbook run as a role: :func:`labkit.ops.execute.run_runbook`)."""
    check_sandbox_region(region)
    return sandbox(ensure_up(), alb_urls=alb_url).as_identity(credentials_from_env())


def describe_status() -> tuple[bool, str]:
    """(running, one line for `labkit doctor` and `labkit sandbox status`)."""
    current = status()
    failing = current.save_lines()[1:2] if current.saves_failing else []
    return current.running, "; ".join([current.summary(), *failing])


def set_quota(target: Target, quota_code: str, value: float) -> float:
    """Set the sandbox ``target``'s quota ``quota_code`` (labkit.infra.quotas) in its region to
    ``value``; the value it had."""
    if not target.is_sandbox or target.endpoint_url is None:
        raise TargetError(
            f"Only the sandbox's quotas can be set directly (asked for {quota_code} on {target.name}).",
            hint="On AWS, request an increase through Service Quotas (the quota-check runbook does).",
        )
    return _set_quota(target.endpoint_url, target.region, quota_code, value)


def set_iam_enforced(target: Target, enforce: bool) -> bool:
    """Switch IAM enforcement of the sandbox ``target`` on or off; whether it was on."""
    return _set_iam_enforced(_sandbox_endpoint(target, "IAM enforcement"), enforce)


def oidc_issuer(target: Target) -> OidcIssuer:
    """The OIDC issuer of the sandbox ``target``: its URL and thumbprint are what an IAM OIDC provider
    for it holds; ``served_at + "/token"`` hands out its tokens (as Actions' token request URL)."""
    return _oidc_issuer(_sandbox_endpoint(target, "An OIDC issuer"))


def id_token(
    target: Target, run: WorkflowRun | None, *, audience: str = STS_AUDIENCE, from_actions: bool = True
) -> str:
    """An ID token as a workflow job gets one: GitHub's, inside an Actions job allowed to request
    it (``from_actions``; it describes that job's own run), else the sandbox ``target``'s issuer's
    with the claims of ``run``. IdentityError anywhere else: only those two issue tokens."""
    from labkit.identity.credentials import actions_token_request, request_id_token

    in_actions = actions_token_request() if from_actions else None
    if in_actions is not None:
        url, bearer = in_actions
        return request_id_token(url, {"audience": audience}, bearer=bearer)
    if not target.is_sandbox:
        raise IdentityError(
            "No ID token: this is not a GitHub Actions job (ACTIONS_ID_TOKEN_REQUEST_URL is unset) and only "
            "the sandbox has an issuer of its own.",
            hint="Run it in a workflow job with `permissions: id-token: write`, or on the sandbox.",
        )
    if run is None:
        raise IdentityError(
            "The sandbox's token needs the workflow run it describes.",
            hint="Pass the repository (--repository OWNER/NAME, or GITHUB_REPOSITORY) or the whole subject.",
        )
    params = {
        "audience": audience,
        "repository": run.repository,
        "ref": run.ref,
        "event_name": run.event_name,
    }
    if run.environment:
        params["environment"] = run.environment
    return request_id_token(oidc_issuer(target).served_at + "/token", params)


def recorded_calls(target: Target, access_key_id: str, since: str | None = None) -> list[dict[str, Any]]:
    """The calls made with ``access_key_id`` on the sandbox ``target`` while IAM was enforced, as
    CloudTrail events (``eventTime``, ``eventSource``, ``eventName``, ``awsRegion``, ``errorCode``),
    oldest first, from ``since`` (ISO 8601) on. The sandbox's stand-in for CloudTrail's LookupEvents."""
    return _recorded_calls(_sandbox_endpoint(target, "A trail of API calls"), access_key_id, since)


def _sandbox_endpoint(target: Target, what: str) -> str:
    if not target.is_sandbox or target.endpoint_url is None:
        raise TargetError(f"{what} is the sandbox's own: {target.name} has none.", hint="Use the sandbox.")
    return target.endpoint_url


def instances() -> list[dict[str, Any]]:
    """The running sandbox's instance apps: instance_id, color, version, state, port, pid, folder."""
    return status().instances


__all__ = [
    "OidcIssuer",
    "SandboxStatus",
    "alb_url",
    "describe_status",
    "down",
    "ensure_up",
    "instances",
    "log_tail",
    "oidc_issuer",
    "recorded_calls",
    "reset",
    "set_iam_enforced",
    "set_quota",
    "status",
    "target",
    "up",
]
