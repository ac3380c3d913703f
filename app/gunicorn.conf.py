"""gunicorn settings for the release app, each with its reason.

One file serves EC2, the sandbox and the tests; what differs between them comes from APP_*
environment variables. Run it from the artifact root (the folder holding ``app/`` and
``release.json``):  ``python -m gunicorn -c app/gunicorn.conf.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.shutdown import Worker


def _env_number(name: str, default: float, low: float, high: float, *, integer: bool = False) -> float:
    """An APP_* setting; a bad value stops gunicorn with a message instead of a silent default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high or (integer and not value.is_integer()):
        kind = "a whole number" if integer else "a number"
        raise SystemExit(f"gunicorn.conf.py: {name}={raw!r} must be {kind} from {low:g} to {high:g}.")
    return value


# The app factory; named here so the command line needs nothing but this file.
wsgi_app = "app:create_app()"

# EC2 serves the ALB on 8080 on every interface (the security group admits only the ALB);
# the sandbox and the tests always pass 127.0.0.1:PORT (port 0 picks a free one).
bind = [os.environ.get("APP_BIND", "0.0.0.0:8080")]

# Threads, not processes, absorb slow requests (added latency, /work): a health check must get
# an answer while a slow request runs. gthread also honours keep-alive, which the sync worker
# ignores.
worker_class = "gthread"

# One process per vCPU of a small instance (t3.small has 2); the sandbox runs many instances
# on one laptop and passes APP_WORKERS=1.
workers = int(_env_number("APP_WORKERS", 2, 1, 64, integer=True))

# Concurrent requests per process; enough for health checks beside a few slow requests.
threads = int(_env_number("APP_THREADS", 4, 1, 256, integer=True))

# After SIGTERM the whole stop (drain, then in-flight requests) must end within this; the
# arbiter SIGKILLs what is left. 30 s covers the drain plus the longest request the app allows
# (/work 5 s, latency fault 10 s) with room to spare, and stays below the ASG's default
# lifecycle wait.
graceful_timeout = int(_env_number("APP_GRACEFUL_TIMEOUT", 30, 1, 3600, integer=True))

# How long a SIGTERMed worker keeps serving with readiness at 503 before it stops accepting
# (see app/shutdown.py): long enough for a load balancer's health check to see the 503 and
# stop routing here, instead of meeting "connection refused".
_drain_s = _env_number("APP_DRAIN_S", 5, 0, 3600)
if _drain_s >= graceful_timeout:
    raise SystemExit(
        f"gunicorn.conf.py: APP_DRAIN_S ({_drain_s:g}) must be below APP_GRACEFUL_TIMEOUT "
        f"({graceful_timeout:g}), or in-flight requests get no time to finish."
    )

# A worker whose main loop is silent this long is hung and gets restarted. With gthread the
# main loop keeps beating while threads run requests, so this does not cap request time.
timeout = 30

# Above the ALB's 60 s idle timeout: the ALB must always be the side that closes an idle
# connection, or it may send a request on a socket the app is closing and answer 502.
keepalive = 65

# Access log to stdout (the journal / the sandbox's log file collects it); errors to stderr.
accesslog = "-"
errorlog = "-"

# gunicorn 25.1+ opens a control socket at one fixed path per user; the sandbox runs many app
# processes as one user, and the lab manages them with signals only. (Older gunicorn ignores
# this name.)
control_socket_disable = True

# Behind the ALB the peer is the load balancer; log the client it forwarded for as well.
access_log_format = '%(h)s fwd=%({x-forwarded-for}i)s "%(r)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker: Worker) -> None:
    """SIGTERM drains first (readiness 503, still serving), then stops gracefully."""
    from app.shutdown import drain_on_sigterm  # imported in the worker, after the app loaded

    drain_on_sigterm(worker, _drain_s)
