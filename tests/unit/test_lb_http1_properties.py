"""Property-based tests of the load balancer's HTTP/1.1 parser against h11, an independent parser.

h11 is strict where RFC 9112 is (it refuses what it cannot frame), so: whatever the load balancer
calls Compliant, h11 reads the same way; whatever h11 refuses, the load balancer does not call
Compliant; and wherever both accept a request, they agree on its method, target, headers and how
its body is framed. Chunked bodies, cut anywhere, end where h11's decoder says they end.
"""

from __future__ import annotations

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.errors import BadHttpMessage
from labkit.sandbox.server.lb import http1

TOKEN_CHARS = "!#$%&'*+-.^_`|~" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = ["Host", "X-A", "Content-Length", "Transfer-Encoding", "Connection", "X_Under", "Content_Length"]
VALUE_PIECES = ["chunked", "gzip", "identity", "0", "3", "12", "-1", "0x1", ",", " ", "\t", "a", "close"]
ODD_BYTES = ["\x00", "\r", "\n", "\x01", "\x7f", "é"]


def names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NAMES), st.text(TOKEN_CHARS, min_size=1, max_size=12))


def values() -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.sampled_from(VALUE_PIECES), st.sampled_from(ODD_BYTES), st.text("abc09 ", max_size=4)
    )
    return st.lists(piece, max_size=4).map("".join)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT"] * 5 + ["G(T"]))
    target = "/" + draw(st.text("abc/?=&%" * 10 + " \x7f", max_size=8))
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/1.2", "HTTP/2.0"]))
    headers = draw(st.lists(st.tuples(names(), values()), max_size=5))
    if draw(st.integers(0, 9)):  # mostly one Host, as RFC 9112 requires of HTTP/1.1
        headers.insert(draw(st.integers(0, len(headers))), ("Host", "x"))
    separator = draw(st.sampled_from([": "] * 6 + [":", " : ", ":  "]))
    newline = draw(st.sampled_from(["\r\n"] * 12 + ["\n"]))
    lines = [f"{method} {target} {version}", *(f"{name}{separator}{value}" for name, value in headers)]
    return newline.join(lines).encode("utf-8")


def h11_request(head: bytes) -> h11.Request | None:
    """What h11 makes of the head, None when it refuses it."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head + b"\r\n\r\n")
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


def h11_framing(request: h11.Request) -> tuple[bool, int]:
    encodings = [value for name, value in request.headers if name == b"transfer-encoding"]
    if encodings:
        return True, 0
    lengths = [value for name, value in request.headers if name == b"content-length"]
    return False, int(lengths[0]) if lengths else 0


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_heads())
def test_the_parser_agrees_with_h11(head: bytes) -> None:
    try:
        ours = http1.parse_request_head(head)
    except BadHttpMessage:
        ours = None
    theirs = h11_request(head)
    if ours is not None and ours.classification == http1.COMPLIANT:
        assert theirs is not None, f"compliant for us, refused by h11: {head!r}"
    if theirs is None or ours is None:
        return
    assert (ours.method, ours.target) == (theirs.method, theirs.target)
    if ours.classification == http1.COMPLIANT:
        assert ours.headers == list(theirs.headers)
    assert (ours.chunked, ours.length) == h11_framing(theirs)


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, list[int]]:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=12))
    parts = []
    for chunk in chunks:
        size = f"{len(chunk):x}"
        size = size.upper() if draw(st.booleans()) else size
        extension = draw(st.sampled_from(["", ";a=b", ";x"]))
        parts.append(f"{size}{extension}\r\n".encode() + chunk + b"\r\n")
    trailer = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
    body = b"".join(parts) + b"0\r\n" + trailer + b"\r\n"
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=6)))
    return body, b"".join(chunks), cuts


@settings(max_examples=500, deadline=None)
@given(chunked_bodies(), st.sampled_from([b"", b"GET /next HTTP/1.1\r\n"]))
def test_chunked_bodies_end_where_h11_says_cut_anywhere(
    case: tuple[bytes, bytes, list[int]], following: bytes
) -> None:
    body, payload, cuts = case
    data = body + following
    scanner = http1.ChunkedScanner()
    end = None
    start = 0
    for stop in [*cuts, len(data)]:
        if stop <= start:
            continue
        end = scanner.feed(data[:stop], start)
        if end is not None:
            break
        start = stop
    assert end == len(body)
    assert scanner.payload == len(payload)

    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + data)
    received = b""
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Data):
            received += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    assert received == payload
    assert connection.trailing_data[0] == following
