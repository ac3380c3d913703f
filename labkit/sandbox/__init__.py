"""The sandbox: an AWS region on loopback (moto's API, real app processes, a real load balancer).

One background service per LABKIT_HOME (``labkit sandbox up``), its files under
``labkit_home()/sandbox/``. Public calls:

- :func:`ensure_up`: start it on demand; the AWS endpoint URL (``labkit.target.sandbox()`` uses it).
  Every path that uses the sandbox calls it, so it is where a failing save is told (stderr).
- :func:`up`, :func:`down`, :func:`reset`, :func:`status`, :func:`describe_status`.
- :func:`alb_url`: an ALB's DNS name to the loopback URL of its HTTP listener.
- :func:`instances`: each instance's app process (port, pid, state), e.g. to crash one in a lesson.
"""

from __future__ import annotations

from typing import Any

from .control import SandboxStatus, alb_url, down, log_tail, reset, status, up, warn_if_unsaved


def ensure_up() -> str:
    """Start the sandbox if it is not running and return its AWS endpoint URL; warn on stderr
    while the sandbox cannot save its AWS state (changes would be lost when it stops)."""
    endpoint = up()
    warn_if_unsaved(endpoint)
    return endpoint


def describe_status() -> tuple[bool, str]:
    """(running, one line for `labkit doctor` and `labkit sandbox status`)."""
    current = status()
    failing = current.save_lines()[1:2] if current.saves_failing else []
    return current.running, "; ".join([current.summary(), *failing])


def instances() -> list[dict[str, Any]]:
    """The running sandbox's instance apps: instance_id, color, version, state, port, pid, folder."""
    return status().instances


__all__ = [
    "SandboxStatus",
    "alb_url",
    "describe_status",
    "down",
    "ensure_up",
    "instances",
    "log_tail",
    "reset",
    "status",
    "up",
]
