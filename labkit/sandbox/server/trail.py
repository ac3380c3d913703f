"""The sandbox's record of API calls made with IAM users' and roles' keys: what CloudTrail is on AWS.

:mod:`.iam`'s authorization path calls :func:`record` for every request while IAM is enforced; the
calls of an access key that AWS issues (``AKIA``/``ASIA``) are kept, allowed or refused, with the
fields of a CloudTrail event that a leak investigation reads (``eventTime``, ``eventSource``,
``eventName``, ``awsRegion``, ``accessKeyId``, ``errorCode``); ``eventName`` is the operation as
moto's authorization names it, which for S3 is the IAM action (``ListAllMyBuckets`` where
CloudTrail says ``ListBuckets``). The sandbox's admin (labkit's own
key, Terraform's) is not recorded: it makes most calls and no lesson asks what it did.
``GET /labkit-sandbox/trail?access_key_id=...&since=...`` answers them (:func:`events`); the
credential-leak runbook reads them through :func:`labkit.sandbox.recorded_calls`, and through
CloudTrail's ``LookupEvents`` on AWS.

Kept in memory (the newest :data:`PER_KEY` per key) and lost when the sandbox restarts, unlike
CloudTrail's 90 days: a drill reads them minutes after the calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from labkit.identity.policy import Request

#: Events kept per access key (the oldest go first).
PER_KEY = 10_000
#: What the service's refusal kinds are called in CloudTrail's ``errorCode``.
_ERROR_CODES = {"denied": "AccessDenied", "invalid": "InvalidClientTokenId", "expired": "ExpiredToken"}

_lock = threading.Lock()
_events: dict[str, deque[dict[str, Any]]] = {}


def record(request: Any, credential: Any, refusal: Any, asked: Sequence[Request] = ()) -> None:
    """Keep one call of ``request``, made with ``credential`` (iam's: ``key_id``, ``region``,
    ``service``; None when unsigned), refused with ``refusal`` (iam's, with a ``kind``) or allowed;
    ``asked`` are the questions put to the caller's policies (one per IAM action the call needs)."""
    if credential is None or not credential.key_id.startswith(("AKIA", "ASIA")):
        return
    event = {
        "eventTime": datetime.now(UTC).isoformat(),
        "eventSource": f"{credential.service}.amazonaws.com",
        "eventName": str(request._get_action()),
        "awsRegion": credential.region,
        "accessKeyId": credential.key_id,
        "errorCode": None if refusal is None else _ERROR_CODES.get(refusal.kind, refusal.kind),
        # Not in CloudTrail: what the sandbox evaluated, so a test can ask which statements a run
        # of calls needed (labkit.identity.policy.needed_statements).
        "authorization": [
            {"action": q.action, "resource": q.resource, "context": _plain(q.context)} for q in asked
        ],
    }
    with _lock:
        _events.setdefault(credential.key_id, deque(maxlen=PER_KEY)).append(event)


def _plain(context: Any) -> dict[str, list[str]]:
    return {key: list(values) for key, values in context.items()}


def events(access_key_id: str, since: str | None = None) -> list[dict[str, Any]]:
    """The recorded calls of ``access_key_id``, oldest first; from ``since`` (ISO 8601) on if given."""
    start = datetime.fromisoformat(since) if since else None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    with _lock:
        found = list(_events.get(access_key_id, ()))
    return [e for e in found if start is None or datetime.fromisoformat(e["eventTime"]) >= start]
