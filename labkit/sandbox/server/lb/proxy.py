"""The request path: a listener's client connections, the exchange with a target, pooled target connections.

Written with asyncio protocols (callbacks, no task per request) because this is the hot path: a
request costs a few callbacks and two writes. Requests are read whole (head and body) before they
are forwarded, so a request on a pooled connection that the target had just closed can be sent
again on a fresh one. Responses are streamed back as they arrive, with flow control both ways.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import cast

from labkit.errors import BadHttpMessage as BadHttpMessage
from labkit.sandbox.server.lb import http1
from labkit.sandbox.server.lb.groups import GroupRuntime, TargetRuntime
from labkit.sandbox.server.lb.http1 import ChunkedScanner, RequestHead
from labkit.sandbox.server.lb.metrics import Counts
from labkit.sandbox.server.lb.routing import RoutingTable
from labkit.sandbox.server.topology import Listener

log = logging.getLogger(__name__)

#: A request body larger than this is answered 413 (the sandbox buffers requests whole; an ALB has no
#: such limit). A chunked body may take up to :data:`MAX_CHUNKED_WIRE_BYTES` with its framing.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Room for the framing of a chunked body of up to MAX_BODY_BYTES sent in 1-byte chunks (6 bytes each).
MAX_CHUNKED_WIRE_BYTES = 8 * MAX_BODY_BYTES

#: How long a connection closed after an error page waits for the client to close first.
LINGER_S = 2.0

#: Request headers the load balancer sets itself or that describe the client's connection only.
_NOT_FORWARDED = http1.HOP_BY_HOP | {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"transfer-encoding",
}

_REASONS = {
    400: "Bad Request",
    408: "Request Time-out",
    413: "Request Entity Too Large",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class ListenerRuntime:
    """One listener's loopback server, its routing table and the exchanges in flight through it."""

    def __init__(self, config: Listener, table: RoutingTable[GroupRuntime | None]) -> None:
        self.config = config
        self.table = table
        #: ELB errors for requests that never reached a target group (counted per load balancer).
        self.counts = Counts()
        self.server: asyncio.Server | None = None
        self.clients: set[ClientConnection] = set()
        self.active: set[Exchange] = set()
        self.pending: set[asyncio.Task[None]] = set()
        self.forwarded = b""
        self.update(config, table)

    def update(self, config: Listener, table: RoutingTable[GroupRuntime | None]) -> None:
        """Swap in a new config and routing table; the next request uses them."""
        self.config = config
        self.table = table
        self.forwarded = (
            f"x-forwarded-proto: {config.protocol.lower()}\r\nx-forwarded-port: {config.port}\r\n"
        ).encode()

    def take_counts(self) -> Counts:
        counts, self.counts = self.counts, Counts()
        return counts

    def dispatch(self, client: ClientConnection, head: RequestHead, body: bytes, close_target: bool) -> None:
        table = self.table
        group = table.choose(head.path, head.get) if table.rules else table.default.pick()
        if group is None:
            self.counts.record_elb_error(503)
            client.reply(503)
            return
        target = group.pick()
        if target is None:
            group.counts.record_elb_error(503)
            client.reply(503)
            return
        group.counts.requests += 1
        request = upstream_request(head, body, client.peer, self.forwarded)
        exchange = Exchange(self, client, group, target, request, head.method == b"HEAD", client.keep_alive)
        exchange.close_target = close_target
        exchange.start()

    def sweep(self, now: float) -> None:
        """Apply the idle timeout: 504 for a target silent that long, close a client idle that long."""
        limit = self.config.idle_timeout_s
        for exchange in [each for each in self.active if now - each.last_activity > limit]:
            exchange.fail(504)
        for client in [
            each for each in self.clients if each.exchange is None and now - each.last_activity > limit
        ]:
            if client.buf:
                # Part of a request, then nothing for the idle timeout: an ALB answers 408.
                self.counts.record_elb_error(408)
                client.reply(408, close=True)
            else:
                client.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pending):
            task.cancel()
        for exchange in list(self.active):
            exchange.abort()
        for client in list(self.clients):
            client.close()


def upstream_request(head: RequestHead, body: bytes, peer: bytes, forwarded: bytes) -> bytes:
    """The request as sent to a target: HTTP/1.1, hop-by-hop headers dropped, X-Forwarded-* set.

    Headers the client's Connection header names are hop-by-hop too (RFC 9110 section 7.6.1), and a
    chunked request loses any Content-Length (RFC 9112 section 6.3: the sender must remove it).
    """
    parts = [head.method, b" ", head.target, b" HTTP/1.1\r\n"]
    forwarded_for = peer
    has_host = False
    dropped = _NOT_FORWARDED
    if head.chunked or head.has_connection:
        dropped = dropped | http1.connection_tokens(head.headers)
        if head.chunked:
            dropped = dropped | {b"content-length"}
    for name, value in head.headers:
        if name in dropped:
            if name == b"x-forwarded-for":
                forwarded_for = value + b", " + peer
            continue
        has_host = has_host or name == b"host"
        parts += (name, b": ", value, b"\r\n")
    if head.chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not has_host:
        parts.append(b"host: localhost\r\n")
    parts += (b"x-forwarded-for: ", forwarded_for, b"\r\n", forwarded, b"\r\n", body)
    return b"".join(parts)


class ClientBudget:
    """How many client connections the plane holds, against its cap (shared by every listener)."""

    __slots__ = ("limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class _Pending:
    """A request whose head is parsed and whose body is still arriving."""

    __slots__ = ("body_start", "head", "scan_from", "scanner")

    def __init__(self, head: RequestHead, body_start: int) -> None:
        self.head = head
        self.body_start = body_start
        self.scanner = ChunkedScanner() if head.chunked else None
        self.scan_from = body_start


class ClientConnection(asyncio.Protocol):
    """A client's connection to a listener: reads requests one at a time, keeps alive between them."""

    def __init__(self, listener: ListenerRuntime, budget: ClientBudget) -> None:
        self.listener = listener
        self.budget = budget
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.exchange: Exchange | None = None
        self.pending: _Pending | None = None
        #: How far the buffer was searched for the end of the next request head.
        self.head_scanned = 0
        self.peer = b"127.0.0.1"
        self.keep_alive = True
        self.counted = False
        self.closed = False
        self.dispatching = False
        self.reading_paused = False
        self.continue_sent = False
        self.last_activity = perf_counter()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.budget.open >= self.budget.limit:
            # Over the cap: a 503 costs less than letting the loop take on one more connection.
            self.listener.counts.record_elb_error(503)
            self.keep_alive = False
            self.reply(503, close=True)
            return
        self.budget.open += 1
        self.counted = True
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.listener.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counted:
            self.counted = False
            self.budget.open -= 1
        self.listener.clients.discard(self)
        if self.exchange is not None:
            self.exchange.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        self.last_activity = perf_counter()
        if self.exchange is None:
            self.next_request()
        elif len(self.buf) > http1.MAX_HEAD_BYTES and not self.reading_paused:
            # A client pipelining far ahead: stop reading until the current exchange is done.
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_upstream(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_upstream(False)

    # our own

    def next_request(self) -> None:
        """Serve buffered requests one at a time (looping, so failures answered at once don't recurse)."""
        if self.dispatching:
            return
        self.dispatching = True
        try:
            while self.exchange is None and not self.closed and self.buf:
                if not self._take_request():
                    break
            if self.exchange is None and self.reading_paused and not self.closed:
                self.reading_paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
        finally:
            self.dispatching = False

    def _take_request(self) -> bool:
        """Dispatch the first request in the buffer; False when it is not all there yet.

        Every byte is looked at once however the request arrives: the head search and the chunked
        scanner each carry on from where the previous piece left them.
        """
        buf = self.buf
        pending = self.pending
        config = self.listener.config
        if pending is None:
            try:
                end = http1.find_head_end(buf, self.head_scanned)
                if end < 0:
                    self.head_scanned = len(buf)
                    return False
                drop = config.drop_invalid_header_fields
                head = http1.parse_request_head(bytes(buf[:end]), drop_invalid=drop)
            except BadHttpMessage as error:
                # Severe, or over the header limits: 400 in every desync mitigation mode.
                log.debug("bad request from %s: %s", self.peer, error)
                self._refuse(400)
                return False
            if head.classification >= http1.ACCEPTABLE:
                self.listener.counts.non_compliant += 1
            if head.classification >= http1.ACCEPTABLE and config.desync_mitigation_mode == "strictest":
                log.debug("request from %s refused in strictest mode: %s", self.peer, head.reason)
                self._refuse(400)
                return False
            if head.length > MAX_BODY_BYTES:
                self._refuse(413)
                return False
            pending = self.pending = _Pending(head, end + 4)
        head = pending.head
        scanner = pending.scanner
        if scanner is not None:
            try:
                body_end = scanner.feed(buf, pending.scan_from)
            except BadHttpMessage as error:
                log.debug("bad chunked body from %s: %s", self.peer, error)
                self._refuse(400)
                return False
            pending.scan_from = len(buf)
            if scanner.payload > MAX_BODY_BYTES or len(buf) - pending.body_start > MAX_CHUNKED_WIRE_BYTES:
                self._refuse(413)
                return False
        else:
            body_end = pending.body_start + head.length
            if body_end > len(buf):
                body_end = None
        if body_end is None:
            expect = head.get(b"expect")
            if expect is not None and expect.lower() == b"100-continue" and not self.continue_sent:
                self.continue_sent = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            return False
        body = bytes(buf[pending.body_start : body_end])
        del buf[:body_end]
        self.pending = None
        self.head_scanned = 0
        self.continue_sent = False
        # Ambiguous in defensive mode: routed, then both connections closed (http-desync-guardian).
        ambiguous = head.classification == http1.AMBIGUOUS and config.desync_mitigation_mode == "defensive"
        self.keep_alive = head.keep_alive() and not ambiguous
        self.listener.dispatch(self, head, body, ambiguous)
        return True

    def _refuse(self, status: int) -> None:
        """Answer a request the load balancer will not route, and close: its end cannot be trusted."""
        self.listener.counts.record_elb_error(status)
        self.reply(status, close=True)

    def reply(self, status: int, *, close: bool = False) -> None:
        """Answer from the load balancer itself (an error page), then carry on or close."""
        close = close or not self.keep_alive
        if self.closed:
            return
        self.transport.write(http1.error_response(status, _REASONS[status], close=close))  # type: ignore[union-attr]
        if close:
            self._linger()

    def _linger(self) -> None:
        """Close after an error page without losing it: send FIN, discard what the client still sends.

        Closing a socket with unread input sends a reset, and a reset can reach the client before it
        has read the page; so the load balancer half-closes and waits for the client's own close.
        """
        transport = self.transport
        assert transport is not None
        self.closed = True
        self.buf.clear()
        self.pending = None
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.buf.clear()
            self.pending = None
            self.transport.close()  # type: ignore[union-attr]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]


class Exchange:
    """One request on its way to a target and its response on the way back."""

    __slots__ = (
        "client",
        "close_target",
        "finished",
        "group",
        "head_only",
        "keep_client",
        "last_activity",
        "listener",
        "request",
        "responded",
        "retried",
        "sent_at",
        "target",
        "upstream",
    )

    def __init__(
        self,
        listener: ListenerRuntime,
        client: ClientConnection,
        group: GroupRuntime,
        target: TargetRuntime,
        request: bytes,
        head_only: bool,
        keep_client: bool,
    ) -> None:
        self.listener = listener
        self.client = client
        self.group = group
        self.target = target
        self.request = request
        self.head_only = head_only
        self.keep_client = keep_client
        self.upstream: UpstreamConnection | None = None
        #: Never pool the target connection after this exchange (an ambiguous request, defensive mode).
        self.close_target = False
        self.responded = False
        self.retried = False
        self.finished = False
        self.sent_at = self.last_activity = 0.0

    def start(self) -> None:
        self.target.in_flight += 1
        self.client.exchange = self
        self.listener.active.add(self)
        self.sent_at = self.last_activity = perf_counter()
        idle = self.target.idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.send(self, reused=True)
                return
        self.connect()

    def connect(self) -> None:
        """Open a fresh connection to the target, then send."""
        if self.target.port is None:
            self.fail(502)
            return
        task = asyncio.get_running_loop().create_task(self._open())
        self.listener.pending.add(task)
        task.add_done_callback(self.listener.pending.discard)

    async def _open(self) -> None:
        target = self.target
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: UpstreamConnection(target), target.host, target.port or 0
            )
        except OSError:
            self.fail(502)
            return
        if self.finished:
            connection.close()
        else:
            connection.send(self, reused=False)

    def on_response_head(self, status: int) -> None:
        self.responded = True
        self.group.counts.record_target(status, perf_counter() - self.sent_at)

    def pause_upstream(self, pause: bool) -> None:
        if self.upstream is not None:
            self.upstream.pause(pause)

    def complete(self) -> None:
        """The response went out whole: keep the client connection for its next request, or close it."""
        if self._finish():
            client = self.client
            client.exchange = None
            client.last_activity = perf_counter()
            if self.keep_client:
                client.next_request()
            else:
                client.close()

    def fail(self, status: int) -> None:
        """The target could not answer: an error page if nothing was sent yet, else cut the client off."""
        if self.finished:
            return
        if self.responded:
            self.abort()
            return
        self._drop_upstream()
        self.group.counts.record_elb_error(status)
        if self._finish():
            client = self.client
            client.exchange = None
            client.reply(status, close=not self.keep_client)
            client.next_request()

    def abort(self) -> None:
        """Give up on the exchange and close both sides (client gone, truncated response, shutdown)."""
        self._drop_upstream()
        if self._finish():
            self.client.exchange = None
            self.client.close()

    def _drop_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.close()

    def _finish(self) -> bool:
        if self.finished:
            return False
        self.finished = True
        self.target.in_flight -= 1
        self.listener.active.discard(self)
        return True


# How the current response's body ends.
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


class UpstreamConnection(asyncio.Protocol):
    """A connection to one target, reused for request after request while both sides keep it alive."""

    def __init__(self, target: TargetRuntime) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.buf = bytearray()
        self.mode = _HEAD
        self.remaining = 0
        self.scanner: ChunkedScanner | None = None
        self.keep_alive = False
        self.received = False
        self.reused = False
        self.paused = False
        self.closed = False
        #: While pooled: since when, and for how long it may stay (the idle timeout of its last use).
        self.idle_since = 0.0
        self.idle_limit = 0.0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.target.idle:
            self.target.idle.remove(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        exchange.upstream = None
        if self.mode == _UNTIL_CLOSE:
            exchange.complete()
        elif self.mode == _HEAD and not self.received and self.reused and not exchange.retried:
            # The target closed a kept-alive connection as we reused it: send again on a fresh one.
            exchange.retried = True
            exchange.connect()
        elif self.mode == _HEAD:
            exchange.fail(502)
        else:
            exchange.abort()

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        self.received = True
        exchange.last_activity = perf_counter()
        if self.mode == _HEAD:
            self._head_data(exchange, data)
            return
        end = self._body_end(data, 0)
        if end is None:
            exchange.client.write(data)
        else:
            exchange.client.write(data[:end])
            self._done(exchange, reusable=end == len(data))

    # our own

    def send(self, exchange: Exchange, *, reused: bool) -> None:
        self.exchange = exchange
        exchange.upstream = self
        self.reused = reused
        self.received = False
        self.mode = _HEAD
        self.transport.write(exchange.request)  # type: ignore[union-attr]

    def pause(self, pause: bool) -> None:
        if pause != self.paused and not self.closed:
            self.paused = pause
            if pause:
                self.transport.pause_reading()  # type: ignore[union-attr]
            else:
                self.transport.resume_reading()  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]

    def _head_data(self, exchange: Exchange, data: bytes) -> None:
        if self.buf:
            self.buf += data
            data = bytes(self.buf)
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > http1.MAX_HEAD_BYTES:
                exchange.fail(502)
            elif not self.buf:
                self.buf += data
            return
        self.buf.clear()
        try:
            head = http1.parse_response_head(data[:end])
            length = http1.content_length(head.headers)
            chunked = http1.is_chunked(head.headers)
        except BadHttpMessage as error:
            log.debug("bad response from target %s: %s", self.target.target_id, error)
            exchange.fail(502)
            return
        body_start = end + 4
        if head.status < 200:
            # An interim response (100 Continue): the load balancer already answered that itself.
            if len(data) > body_start:
                self._head_data(exchange, data[body_start:])
            return
        if exchange.head_only or head.status in (204, 304):
            self.mode, self.remaining = _LENGTH, 0
        elif chunked:
            self.mode, self.scanner = _CHUNKED, ChunkedScanner()
        elif length is not None:
            self.mode, self.remaining = _LENGTH, length
        else:
            self.mode = _UNTIL_CLOSE
        self.keep_alive = head.keep_alive() and self.mode != _UNTIL_CLOSE
        exchange.on_response_head(head.status)
        out_head = b""
        if self.mode == _UNTIL_CLOSE or not exchange.keep_client or head.get(b"connection") is not None:
            # The client's connection has its own life: say whether it stays open, whatever the target said.
            exchange.keep_client = exchange.keep_client and self.mode != _UNTIL_CLOSE
            out_head = http1.with_connection_header(data[:body_start], close=not exchange.keep_client)
        body_end = self._body_end(data, body_start)
        stop = len(data) if body_end is None else body_end
        if out_head:
            exchange.client.write(out_head + data[body_start:stop])
        else:
            exchange.client.write(data if stop == len(data) else data[:stop])
        if body_end is not None:
            self._done(exchange, reusable=body_end == len(data))

    def _body_end(self, data: bytes, start: int) -> int | None:
        """Where the body ends in ``data``, or None when it goes on."""
        if self.mode == _LENGTH:
            available = len(data) - start
            if available >= self.remaining:
                end = start + self.remaining
                self.remaining = 0
                return end
            self.remaining -= available
            return None
        if self.mode == _CHUNKED:
            try:
                return self.scanner.feed(data, start)  # type: ignore[union-attr]
            except BadHttpMessage:
                self.close()
                return None
        return None

    def _done(self, exchange: Exchange, *, reusable: bool) -> None:
        """The response is through: back to the pool if the target keeps it alive, then finish."""
        self.exchange = None
        exchange.upstream = None
        self.mode = _HEAD
        self.pause(False)
        pool = reusable and self.keep_alive and not exchange.close_target
        if pool and self.target.accepting and not self.closed:
            # The load balancer closes idle target connections first (the app's keep-alive is longer),
            # so it never sends a request on a connection the target is closing.
            self.idle_since = perf_counter()
            self.idle_limit = exchange.listener.config.idle_timeout_s
            self.target.idle.append(self)
        else:
            self.close()
        exchange.complete()
