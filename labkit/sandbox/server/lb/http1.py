"""Just enough HTTP/1.1 for a proxy: split a message head, find where a body ends, build error pages.

The proxy never re-encodes bodies: it only needs to know where each message ends so that it can
keep connections alive on both sides. Header names are compared in lower case; values are kept
as bytes so they pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import BadHttpMessage

#: A request or response head larger than this is refused (ALB's own limit is 64 KiB).
MAX_HEAD_BYTES = 64 * 1024

#: Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}
)


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes  # as sent: path and query
    version: bytes  # b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]]  # (lower-case name, value)

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def path(self) -> str:
        return self.target.split(b"?", 1)[0].decode("latin-1")

    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept after this exchange."""
        connection = (self.get(b"connection") or b"").lower()
        if self.version == b"HTTP/1.1":
            return b"close" not in connection
        return b"keep-alive" in connection


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request line and headers (``head`` excludes the final blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadHttpMessage(f"bad request line {lines[0][:100]!r}")
    return RequestHead(parts[0], parts[1], parts[2], _parse_headers(lines))


@dataclass(slots=True)
class ResponseHead:
    status: int
    version: bytes
    headers: list[tuple[bytes, bytes]]

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def keep_alive(self) -> bool:
        connection = (self.get(b"connection") or b"").lower()
        if self.version == b"HTTP/1.1":
            return b"close" not in connection
        return b"keep-alive" in connection


def parse_response_head(head: bytes) -> ResponseHead:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadHttpMessage(f"bad status line {lines[0][:100]!r}")
    return ResponseHead(int(parts[1]), parts[0], _parse_headers(lines))


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadHttpMessage(f"bad header line {line[:100]!r}")
        headers.append((name.lower(), value.strip()))
    return headers


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length, None when absent; raises when it is not one non-negative number."""
    values = {value for key, value in headers if key == b"content-length"}
    if not values:
        return None
    if len(values) != 1:
        raise BadHttpMessage("conflicting Content-Length headers")
    value = values.pop()
    if not value.isdigit():
        raise BadHttpMessage(f"bad Content-Length {value[:40]!r}")
    return int(value)


def is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"transfer-encoding":
            if value.lower().rstrip().endswith(b"chunked"):
                return True
            raise BadHttpMessage(f"unsupported Transfer-Encoding {value[:40]!r}")
    return False


class ChunkedScanner:
    """Finds the end of a chunked body fed in pieces, without copying it.

    ``feed(data, start)`` returns the index in ``data`` just past the body's end, or None when the
    body goes on past ``data``.
    """

    __slots__ = ("_line", "_remaining", "_state")

    # States: reading a size line, reading chunk data, expecting CRLF after data, reading trailers.
    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._remaining = 0
        self._line = b""  # a size or trailer line split across feeds

    def feed(self, data: bytes | bytearray, start: int = 0) -> int | None:
        pos = start
        end = len(data)
        while pos < end:
            if self._state == self._DATA:
                take = min(self._remaining, end - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
                    self._remaining = 2
                continue
            if self._state == self._DATA_END:
                take = min(self._remaining, end - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._SIZE
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += bytes(data[pos:])
                if len(self._line) > 4096:
                    raise BadHttpMessage("chunk size or trailer line too long")
                return None
            line = (self._line + bytes(data[pos:newline])).rstrip(b"\r")
            self._line = b""
            pos = newline + 1
            if self._state == self._TRAILER:
                if not line:
                    return pos
                continue
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadHttpMessage(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                self._state = self._TRAILER
            else:
                self._state = self._DATA
                self._remaining = size
        return None


def error_response(status: int, reason: str, *, close: bool) -> bytes:
    """A small HTML error page in the shape an ALB sends (``Server: awselb/2.0``)."""
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: awselb/2.0\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode()
    return head + body


def with_connection_header(head: bytes, *, close: bool) -> bytes:
    """A response head (with its final blank line) whose Connection header says keep-alive or close."""
    lines = head[:-4].split(b"\r\n")
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP]
    connection = b"Connection: close" if close else b"Connection: keep-alive"
    return b"\r\n".join([lines[0], *kept, connection]) + b"\r\n\r\n"
