"""Graceful shutdown with a drain period, installed in each gunicorn worker.

Gunicorn's own SIGTERM handling stops accepting connections at once, so a load balancer's
health check that arrives after it gets "connection refused", never the 503 that tells it to
take the instance out of rotation. Here SIGTERM first *drains*: readiness answers 503 at once
while every other request is still served, and only after ``drain_s`` does the worker start
gunicorn's normal graceful stop (no new connections, in-flight requests finish). The arbiter
kills whatever is left at ``graceful_timeout`` after its own SIGTERM, so ``drain_s`` plus the
longest request must fit inside it (gunicorn.conf.py checks the first part).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Protocol

from flask import Flask

from . import app_state


class WorkerLog(Protocol):
    def info(self, msg: str, *args: object) -> None: ...


class Worker(Protocol):
    """What this module uses of a gunicorn worker (gunicorn ships no type hints)."""

    @property
    def wsgi(self) -> Flask: ...

    @property
    def log(self) -> WorkerLog: ...

    def handle_exit(self, sig: int, frame: FrameType | None) -> None: ...


def drain_on_sigterm(worker: Worker, drain_s: float) -> None:
    """Replace ``worker``'s SIGTERM handler (gunicorn ``post_worker_init`` hook) with drain-then-stop."""
    state = app_state(worker.wsgi)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if state.draining:
            return  # a second SIGTERM changes nothing: the stop is already scheduled
        state.begin_drain()
        worker.log.info("SIGTERM: draining for %.1f s (readiness 503), then stopping gracefully", drain_s)
        # gunicorn's own handler starts the graceful stop; it is thread-safe (it flips a flag and
        # wakes the worker's poller), so a timer thread may call it.
        timer = threading.Timer(drain_s, worker.handle_exit, args=(signum, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)
    # signal.signal() makes SIGTERM interrupt system calls again; gunicorn turns that off so a
    # signal does not disturb requests in flight, and so do we.
    signal.siginterrupt(signal.SIGTERM, False)
