"""One JSON request over HTTP(S) with the standard library, its failures as DeliveryError."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from labkit.errors import DeliveryError

#: Seconds a call may take: a stuck API must not hold a deploy job until its own timeout.
TIMEOUT_S = 30.0


def request_json(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any = None,
    timeout: float = TIMEOUT_S,
    secret_url: bool = False,
) -> Any:
    """Send ``body`` as JSON (when not None) and return the parsed JSON answer (None when empty).

    A non-2xx answer raises DeliveryError with the status and the server's own message; so does a
    server that cannot be reached. ``secret_url`` keeps the URL's path out of messages (a webhook's
    path is its secret, and job logs are read by many).
    """
    shown = _shown(url, secret_url)
    data = None if body is None else json.dumps(body).encode()
    all_headers = dict(headers)
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = _message(exc.read())
        raise DeliveryError(
            f"{method} {shown} answered {exc.code} {exc.reason}" + (f": {detail}" if detail else ""),
            hint=_hint(exc.code),
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(
            f"{method} {shown} failed: {reason}",
            hint="Check the URL (GITHUB_API_URL, the webhook) and the runner's network, then re-run the job.",
        ) from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode(errors="replace")  # Slack's webhook answers a plain "ok"


def _message(raw: bytes) -> str:
    """The ``message`` of a JSON error answer (GitHub's shape), else the first 200 characters."""
    text = raw.decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return text[:200]


def _hint(status: int) -> str:
    if status in (401, 403):
        return (
            "The token lacks a permission: give the job the one this call needs (deployments: write, "
            "issues: write or actions: read) in its `permissions`."
        )
    if status == 404:
        return "Check GITHUB_REPOSITORY and the id in the call; a token without access also gets 404."
    return "Re-run the job; if it persists, the answer above says what the server refused."


def _shown(url: str, secret: bool) -> str:
    if not secret:
        return url
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc}/..."
