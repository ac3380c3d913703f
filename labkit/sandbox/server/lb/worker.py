"""The data plane's own process, started by :class:`~labkit.sandbox.server.lb.LoadBalancerPlane`.

Why a process and not a thread of the sandbox service: the service runs moto's API, its reconcile
loop, alarm evaluation and state saves in one interpreter, all holding the GIL in turn. A proxy
thread in there waits for the GIL on every callback whenever any of them is busy, so the latency
the lessons measure would depend on what the sandbox happens to be doing (bench/alb_overhead.py
has the figures). In a process of its own the proxy has an interpreter, and a core, to itself.

The process reads commands from its end of a socket pair (fd passed on the command line) and
answers on it (see :mod:`.channel`); when the socket closes, because the plane closed or its
owner died, it stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from labkit.errors import LabkitError
from labkit.sandbox.server.lb import channel
from labkit.sandbox.server.lb.engine import Engine, Snapshot

log = logging.getLogger(__name__)

#: The process's program. It registers ``labkit``, ``labkit.sandbox`` and ``labkit.sandbox.server``
#: as bare packages so that importing the data plane skips their ``__init__`` (nothing there that
#: this process uses).
BOOTSTRAP = """
import sys, types
for name, path in {packages!r}:
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from labkit.sandbox.server.lb.worker import main
main(sys.argv[1:])
"""


def main(argv: list[str]) -> None:
    """``FD METRICS_PERIOD_S LOG_LEVEL MAX_CLIENTS``: serve the plane until the socket closes."""
    fd, period, level, max_clients = int(argv[0]), float(argv[1]), int(argv[2]), int(argv[3])
    # Ctrl-C in a terminal or a notebook reaches the whole process group; the owner decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [lb %(process)d] %(message)s",
    )
    loop = new_event_loop()
    loop.set_exception_handler(_log_loop_error)
    try:
        loop.run_until_complete(serve(socket.socket(fileno=fd), period, max_clients))
    finally:
        loop.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (about 10 % less CPU per proxied request here), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(sock: socket.socket, metrics_period_s: float, max_clients: int) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)

    def send(message: tuple[Any, ...]) -> None:
        if not writer.is_closing():
            writer.write(channel.encode(message))

    def on_change(snapshot: Snapshot) -> None:
        send(("snapshot", snapshot))

    engine = Engine(
        publish=lambda points: send(("metrics", points)),
        on_change=on_change,
        metrics_period_s=metrics_period_s,
        max_client_connections=max_clients,
    )
    send(("ready", os.getpid()))
    close_request: int | None = None
    while True:
        try:
            message = await channel.read(reader)
        except EOFError:
            log.info("the plane's owner closed the channel; stopping")
            break
        kind, request = message[0], message[1]
        if kind == "close":
            close_request = request
            break
        listeners, groups, matchers, ports = message[2:]
        try:
            await engine.apply(listeners, groups, matchers, ports)
        except LabkitError as error:
            send(("reply", request, (type(error).__name__, error.message, error.hint)))
        except Exception as error:  # a bug must reach the caller, not silently stop the plane
            log.exception("apply failed")
            send(("reply", request, ("SandboxError", f"The load balancer failed to apply: {error!r}", None)))
        else:
            send(("reply", request, None))
    await engine.close()
    if close_request is not None:
        send(("reply", close_request, None))
    if not writer.is_closing():
        await writer.drain()
        writer.close()


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.error("load balancer loop: %s", context.get("message"), exc_info=context.get("exception"))
