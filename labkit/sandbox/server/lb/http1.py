"""Just enough HTTP/1.1 for a proxy: split a message head, find where a body ends, build error pages.

The proxy never re-encodes bodies: it only needs to know where each message ends so that it can
keep connections alive on both sides. Header names are compared in lower case; values are kept
as bytes so they pass through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from labkit.errors import BadHttpMessage

#: A request head larger than this in total is refused with 400 (an ALB's limit: "whole request header 64K").
MAX_HEAD_BYTES = 64 * 1024
#: A request line or one header line longer than this is refused with 400 (an ALB's "16K" limits).
MAX_LINE_BYTES = 16 * 1024

#: Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}
)

#: Desync mitigation classes, as http-desync-guardian names them, in order of risk.
COMPLIANT, ACCEPTABLE, AMBIGUOUS, SEVERE = range(4)

#: Desync mitigation modes (the load balancer attribute ``routing.http.desync_mitigation_mode``).
DESYNC_MODES = ("monitor", "defensive", "strictest")

# Control characters other than HTAB, a CR not followed by LF, an LF not preceded by CR: a head
# holding any of them is refused in every mode (guardian's BadHeader/BadUri, and bare-LF framing).
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
#: A head with nothing odd in it: token method, a target of visible bytes, HTTP/1.x, token names,
#: values of visible bytes, spaces and tabs. One C-speed match lets most requests skip the checks
#: that say what exactly is wrong (:func:`_refuse_malformed`).
_WELL_FORMED = re.compile(
    _TCHAR + rb"+ [\x21-\x7e\x80-\xff]+ HTTP/1\.[0-9](?:\r\n" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*)*"
)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header names an ALB calls valid (``routing.http.drop_invalid_header_fields.enabled``).
_VALID_NAME = re.compile(rb"[-A-Za-z0-9]+")
_NOT_LETTER = re.compile(rb"[^a-z]")
_FRAMING_NAMES = {b"transferencoding": b"transfer-encoding", b"contentlength": b"content-length"}


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes  # as sent: path and query
    version: bytes  # b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]]  # (lower-case name, value)
    #: Desync classification (COMPLIANT .. AMBIGUOUS; SEVERE raises) and guardian's reason for it.
    classification: int = COMPLIANT
    reason: str = "Compliant"
    #: How the body is framed: chunked, else ``length`` bytes (0 when neither header is present).
    chunked: bool = False
    length: int = 0
    #: Whether a Connection header is present (the headers it names are hop-by-hop too).
    has_connection: bool = False

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
        return _keep_alive(self.version, self.headers)

    def flag(self, classification: int, reason: str) -> None:
        if classification > self.classification:
            self.classification, self.reason = classification, reason


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The lower-case tokens of every Connection header (``close``, ``keep-alive``, header names)."""
    tokens: set[bytes] = set()
    for key, value in headers:
        if key == b"connection":
            tokens.update(token.strip(b" \t").lower() for token in value.split(b","))
    tokens.discard(b"")
    return tokens


def _keep_alive(version: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    tokens = connection_tokens(headers)
    if version == b"HTTP/1.0":
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens


def find_head_end(buf: bytes | bytearray, start: int) -> int:
    """Where the blank line ending a request head starts in ``buf`` (searching from ``start``), or -1.

    Raises BadHttpMessage as soon as the head cannot be one this proxy accepts, whatever is still to
    come: a bare LF, more than :data:`MAX_HEAD_BYTES`, or a line over :data:`MAX_LINE_BYTES`.
    """
    search_from = max(0, start - 3)
    end = buf.find(b"\r\n\r\n", search_from)
    if end > MAX_HEAD_BYTES:
        raise BadHttpMessage(f"request head of {end} bytes is over {MAX_HEAD_BYTES}")
    if end >= 0:
        return end
    if _BARE_LF.search(buf, max(0, start - 1)) is not None:
        raise BadHttpMessage("bare LF in the request head")
    if len(buf) > MAX_HEAD_BYTES + 3:
        raise BadHttpMessage(f"request head over {MAX_HEAD_BYTES} bytes")
    if len(buf) - (buf.rfind(b"\n") + 1) > MAX_LINE_BYTES:
        raise BadHttpMessage(f"request line or header over {MAX_LINE_BYTES} bytes")
    return -1


def parse_request_head(head: bytes, *, drop_invalid: bool = False) -> RequestHead:
    """Parse and classify a request line and headers (``head`` excludes the final blank line).

    Raises BadHttpMessage for what http-desync-guardian calls Severe, for what cannot be framed and
    for an HTTP/1.1 request without exactly one Host: the caller answers 400 in every mode. With
    ``drop_invalid``, header names outside ``[-A-Za-z0-9]`` are left out, as an ALB's
    ``routing.http.drop_invalid_header_fields.enabled`` does.
    """
    if _WELL_FORMED.fullmatch(head) is None:
        _refuse_malformed(head)
    lines = head.split(b"\r\n")
    if len(head) > MAX_LINE_BYTES and max(map(len, lines)) > MAX_LINE_BYTES:
        raise BadHttpMessage(f"request line or header over {MAX_LINE_BYTES} bytes")
    parts = lines[0].split(b" ")
    method, target, version = parts
    request = RequestHead(method, target, version, [])
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if len(version) == 8 and version.startswith(b"HTTP/1.") and version[7:8].isdigit():
            request.flag(ACCEPTABLE, "NonCompliantVersion")
        else:
            raise BadHttpMessage(f"bad version {version[:20]!r}")
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    headers = request.headers
    hosts = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.lower()
        value = value.strip(b" \t")
        if key == b"host":
            hosts += 1
        elif key == b"content-length":
            lengths.append(value)
        elif key == b"transfer-encoding":
            encodings.append(value)
        elif key == b"connection":
            request.has_connection = True
        elif (b"length" in key or b"encoding" in key) and _NOT_LETTER.sub(b"", key) in _FRAMING_NAMES:
            # "Transfer_Encoding" and the like: some servers take it for the real one.
            request.flag(AMBIGUOUS, "SuspiciousHeader")
        if drop_invalid and _VALID_NAME.fullmatch(name) is None:
            continue
        headers.append((key, value))
    if hosts > 1 or (hosts == 0 and version != b"HTTP/1.0"):
        # RFC 9112 section 3.2: a server must answer 400 to an HTTP/1.1 request without exactly one Host.
        raise BadHttpMessage(f"{hosts} Host headers")
    if lengths or encodings:
        _frame(request, lengths, encodings)
    return request


def _refuse_malformed(head: bytes) -> NoReturn:
    """Raise BadHttpMessage saying what makes ``head`` malformed (it failed :data:`_WELL_FORMED`)."""
    bad = _BAD_BYTES.search(head)
    if bad is not None:
        raise BadHttpMessage(f"control character or bare CR/LF {bad.group()!r} in the request head")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1] or _TOKEN.fullmatch(parts[0]) is None:
        raise BadHttpMessage(f"bad request line {lines[0][:100]!r}")
    if not parts[2].startswith(b"HTTP/1.") or len(parts[2]) != 8:
        raise BadHttpMessage(f"bad version {parts[2][:20]!r}")
    for line in lines[1:]:
        name, sep, _ = line.partition(b":")
        if not sep or _TOKEN.fullmatch(name) is None:
            raise BadHttpMessage(f"bad header line {line[:100]!r}")
    raise BadHttpMessage(f"malformed request head {head[:100]!r}")


def _frame(request: RequestHead, lengths: list[bytes], encodings: list[bytes]) -> None:
    """Set the body's framing from Content-Length and Transfer-Encoding, classifying what is odd."""
    values = [item.strip(b" \t") for value in lengths for item in value.split(b",")]
    for value in values:
        if not value.isdigit() or len(value) > 18:
            raise BadHttpMessage(f"bad Content-Length {value[:40]!r}")
    if len({int(value) for value in values}) > 1:
        raise BadHttpMessage("conflicting Content-Length headers")
    if len(values) > 1:
        request.flag(AMBIGUOUS, "DuplicateContentLength")
    if encodings:
        tokens = [token.strip(b" \t").lower() for value in encodings for token in value.split(b",")]
        if tokens.count(b"chunked") > 1:
            raise BadHttpMessage("chunked more than once")
        if tokens != [b"chunked"]:
            raise BadHttpMessage(f"unsupported Transfer-Encoding {b', '.join(tokens)[:40]!r}")
        request.chunked = True
        if values:
            request.flag(AMBIGUOUS, "BothTeClPresent")
        if request.version == b"HTTP/1.0":
            request.flag(AMBIGUOUS, "UndefinedTransferEncodingSemantics")
    else:
        request.length = int(values[0])
    if request.method in (b"GET", b"HEAD"):
        if encodings:
            request.flag(AMBIGUOUS, "UndefinedTransferEncodingSemantics")
        elif request.length:
            request.flag(AMBIGUOUS, "UndefinedContentLengthSemantics")
        else:
            request.flag(ACCEPTABLE, "GetHeadZeroContentLength")


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
        return _keep_alive(self.version, self.headers)


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


#: A chunk-size line (with any extensions) ending in CRLF; the size is at most 16 hex digits.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\r\n]*)?\r\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedScanner:
    """Finds the end of a chunked body fed in pieces, without copying it.

    ``feed(data, start)`` returns the index in ``data`` just past the body's end, or None when the
    body goes on past ``data``; the next call must start where this one stopped (``len(data)``),
    so each byte is looked at once however the body arrives. ``payload`` counts the chunk data.
    """

    __slots__ = ("_line", "_remaining", "_state", "payload")

    def __init__(self) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = b""  # a size or trailer line split across feeds
        self.payload = 0

    def feed(self, data: bytes | bytearray, start: int = 0) -> int | None:
        pos = start
        end = len(data)
        match_line = _CHUNK_LINE.match
        while pos < end:
            state = self._state
            if state == _SIZE and not self._line:
                # Fast path: a whole size line, and often the chunk after it, already in ``data``.
                match = match_line(data, pos)
                if match is not None:
                    size = int(match.group(1), 16)
                    self.payload += size
                    pos = match.end()
                    if size == 0:
                        self._state = _TRAILER
                    elif pos + size + 2 <= end:
                        pos += size
                        if data[pos : pos + 2] != b"\r\n":
                            raise BadHttpMessage("chunk data not followed by CRLF")
                        pos += 2
                    else:
                        self._state, self._remaining = _DATA, size
                    continue
            if state == _DATA:
                take = min(self._remaining, end - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state, self._remaining = _DATA_END, 2
                continue
            if state == _DATA_END:
                expected = b"\r\n"[2 - self._remaining :]
                take = min(self._remaining, end - pos)
                if data[pos : pos + take] != expected[:take]:
                    raise BadHttpMessage("chunk data not followed by CRLF")
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _SIZE
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += bytes(data[pos:])
                if len(self._line) > 4096:
                    raise BadHttpMessage("chunk size or trailer line too long")
                return None
            line = self._line + bytes(data[pos:newline])
            self._line = b""
            pos = newline + 1
            if not line.endswith(b"\r"):
                raise BadHttpMessage("bare LF in a chunked body")
            line = line[:-1]
            if state == _TRAILER:
                if not line:
                    return pos
                continue
            size_text = line.split(b";", 1)[0].rstrip(b" \t")
            if _CHUNK_SIZE.fullmatch(size_text) is None:
                raise BadHttpMessage(f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            self.payload += size
            if size == 0:
                self._state = _TRAILER
            else:
                self._state, self._remaining = _DATA, size
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
