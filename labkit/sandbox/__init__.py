"""The sandbox: an AWS region on loopback (moto's API, real app processes, a real load balancer).

Public calls: :func:`ensure_up` (start on demand, return the AWS endpoint URL).
"""

from __future__ import annotations

from ..errors import SandboxError


def ensure_up() -> str:
    """Start the sandbox if it is not running and return its AWS endpoint URL."""
    raise SandboxError(
        "The sandbox service is not built yet in this checkout.",
        hint="Pass an explicit loopback endpoint_url to labkit.target.sandbox() meanwhile.",
    )


def describe_status() -> tuple[bool, str]:
    """(running, one line for `labkit doctor` and `labkit sandbox status`)."""
    return False, "not built yet in this checkout"
