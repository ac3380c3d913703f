"""The load balancer's pure parts: HTTP framing, ALB rule matching, weighted choice, metrics, matchers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from labkit.errors import BadHttpMessage, ConfigError
from labkit.sandbox.server.lb import http1
from labkit.sandbox.server.lb.health import Matcher, validate
from labkit.sandbox.server.lb.metrics import Counts, count_points, latency_points, lb_dimension
from labkit.sandbox.server.lb.routing import (
    WeightedChoice,
    compile_listener,
    forwarded_groups,
    wildcard_regex,
)
from labkit.sandbox.server.topology import Forward, HealthCheck, Listener, Rule

# --- HTTP/1.1 framing --------------------------------------------------------------------------


def test_request_head_is_parsed_with_lower_case_names_and_raw_values() -> None:
    head = http1.parse_request_head(b"GET /a/b?x=1 HTTP/1.1\r\nHost: Example:80\r\nX-Preview: Green")
    assert (head.method, head.target, head.path) == (b"GET", b"/a/b?x=1", "/a/b")
    assert head.get(b"host") == b"Example:80"
    assert head.get(b"x-preview") == b"Green"
    assert head.keep_alive()


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"HTTP/1.1", b"", True),
        (b"HTTP/1.1", b"\r\nConnection: close", False),
        (b"HTTP/1.0", b"", False),
        (b"HTTP/1.0", b"\r\nConnection: Keep-Alive", True),
    ],
)
def test_keep_alive_follows_version_and_connection_header(
    version: bytes, connection: bytes, keep: bool
) -> None:
    head = http1.parse_request_head(b"GET / " + version + b"\r\nHost: x" + connection)
    assert head.keep_alive() is keep


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\r\nHost: x",
        b"GET / SPDY/3\r\nHost: x",
        b"GET / HTTP/1.1\r\nno colon here",
        b"GET / HTTP/1.1\r\n : x",
    ],
)
def test_malformed_request_heads_are_refused(raw: bytes) -> None:
    with pytest.raises(BadHttpMessage):
        http1.parse_request_head(raw)


def test_conflicting_content_lengths_are_refused() -> None:
    headers = [(b"content-length", b"3"), (b"content-length", b"4")]
    with pytest.raises(BadHttpMessage):
        http1.content_length(headers)
    assert http1.content_length([(b"content-length", b"7"), (b"content-length", b"7")]) == 7
    assert http1.content_length([]) is None


# http-desync-guardian's classes (github.com/aws/http-desync-guardian, docs/README.md), which an ALB's
# routing.http.desync_mitigation_mode acts on; Severe ones raise BadHttpMessage (400 in every mode).
C, A, M = http1.COMPLIANT, http1.ACCEPTABLE, http1.AMBIGUOUS


def with_host(raw: bytes) -> bytes:
    """The head with a Host header after its request line, if it has none (RFC 9112 requires one)."""
    if b"\nhost:" in raw.lower():
        return raw
    line, sep, rest = raw.partition(b"\r\n")
    return line + b"\r\nHost: x" + sep + rest


@pytest.mark.parametrize(
    ("raw", "classification", "reason", "chunked", "length"),
    [
        (b"GET / HTTP/1.1\r\nHost: x", C, "Compliant", False, 0),
        (b"POST / HTTP/1.1\r\nContent-Length: 5", C, "Compliant", False, 5),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked ", C, "Compliant", True, 0),
        (b"GET / HTTP/1.2\r\nHost: x", A, "NonCompliantVersion", False, 0),
        (b"GET / HTTP/1.1\r\nContent-Length: 0", A, "GetHeadZeroContentLength", False, 0),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
            M,
            "BothTeClPresent",
            True,
            0,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3", M, "DuplicateContentLength", False, 3),
        (b"POST / HTTP/1.1\r\nContent-Length: 3, 3", M, "DuplicateContentLength", False, 3),
        (b"GET / HTTP/1.1\r\nContent-Length: 3", M, "UndefinedContentLengthSemantics", False, 3),
        (b"HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked", M, "UndefinedTransferEncodingSemantics", True, 0),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", M, "UndefinedTransferEncodingSemantics", True, 0),
        (b"POST / HTTP/1.1\r\nTransfer_Encoding: chunked", M, "SuspiciousHeader", False, 0),
        (b"POST / HTTP/1.1\r\nContent_Length: 3", M, "SuspiciousHeader", False, 0),
    ],
)
def test_requests_are_classified_as_http_desync_guardian_does(
    raw: bytes, classification: int, reason: str, chunked: bool, length: int
) -> None:
    head = http1.parse_request_head(with_host(raw))
    assert (head.classification, head.reason, head.chunked, head.length) == (
        classification,
        reason,
        chunked,
        length,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip",  # BadTransferEncoding
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",  # only chunked is framed
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",  # MultipleContentLength
        b"POST / HTTP/1.1\r\nContent-Length: -1",  # BadContentLength
        b"POST / HTTP/1.1\r\nContent-Length: 0x10",
        b"POST / HTTP/1.1\r\nContent-Length: ",
        b"GET / HTTP/1.1\r\nX: a\x00b",  # BadHeader
        b"GET / HTTP/1.1\r\nX: a\rb",
        b"GET / HTTP/1.1\r\nX: a\x1bb",
        b"GET / HTTP/1.1\nHost: x",  # bare LF
        b"GET /\x00 HTTP/1.1\r\nHost: x",  # BadUri
        b"GET / HTTP/2.0\r\nHost: x",  # BadVersion
        b"G(T / HTTP/1.1\r\nHost: x",  # BadMethod
        b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked",  # whitespace before the colon
        b"GET / HTTP/1.1\r\n folded: value",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (16 * 1024),  # over the single-header limit
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",  # RFC 9112 3.2: exactly one Host
    ],
)
def test_severe_requests_are_refused(raw: bytes) -> None:
    with pytest.raises(BadHttpMessage):
        http1.parse_request_head(with_host(raw))


def test_head_limits_are_found_however_the_bytes_arrive() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"a" * 15_000 + b"\r\n\r\n"
    buf = bytearray()
    scanned = 0
    for start in range(0, len(head), 7):
        buf += head[start : start + 7]
        end = http1.find_head_end(buf, scanned)
        scanned = len(buf)
    assert end == len(head) - 4
    too_long_line = b"GET / HTTP/1.1\r\nX-A: " + b"a" * (16 * 1024 + 1)
    with pytest.raises(BadHttpMessage):
        http1.find_head_end(too_long_line, 0)  # before the head is even complete
    too_big = b"GET / HTTP/1.1\r\n" + b"X-A: aaaaaaaaaa\r\n" * 4000
    with pytest.raises(BadHttpMessage):
        http1.find_head_end(too_big, 0)
    with pytest.raises(BadHttpMessage):
        http1.find_head_end(too_big + b"\r\n", 0)


def test_invalid_header_names_are_dropped_on_request() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX_Under: 1\r\nX.Dot: 2\r\nX-Ok-9: 3"
    names = [name for name, _ in http1.parse_request_head(raw).headers]
    assert names == [b"host", b"x_under", b"x.dot", b"x-ok-9"]
    dropped = http1.parse_request_head(raw, drop_invalid=True)
    assert [name for name, _ in dropped.headers] == [b"host", b"x-ok-9"]


@pytest.mark.parametrize(
    ("connection", "keep"),
    [(b"x-enclosed", True), (b"keep-alive, close", False), (b" CLOSE ", False), (b"upgrade,close", False)],
)
def test_connection_tokens_not_substrings(connection: bytes, keep: bool) -> None:
    head = http1.parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: " + connection)
    assert head.keep_alive() is keep


def test_chunked_scanner_finds_the_end_across_any_split() -> None:
    body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: yes\r\n\r\n"
    following = b"HTTP/1.1 200 OK\r\n"
    data = body + following
    for split in range(1, len(data)):
        scanner = http1.ChunkedScanner()
        first = scanner.feed(data[:split])
        if first is not None:
            assert first == len(body)
            continue
        second = scanner.feed(data[split:])
        assert second is not None and split + second == len(body)


@pytest.mark.parametrize(
    "body", [b"zz\r\n", b"0x1\r\na\r\n", b"-1\r\n", b"1_0\r\n", b"1\r\nab\r\n", b"1\na\r\n"]
)
def test_chunked_scanner_refuses_bad_sizes_and_framing(body: bytes) -> None:
    with pytest.raises(BadHttpMessage):
        http1.ChunkedScanner().feed(body)


def test_chunked_scanner_counts_the_payload_fed_byte_by_byte() -> None:
    body = b"".join(b"1\r\n%c\r\n" % byte for byte in b"hello") + b"a;x=y\r\n0123456789\r\n0\r\n\r\n"
    scanner = http1.ChunkedScanner()
    ends = [scanner.feed(body[: i + 1], i) for i in range(len(body))]
    assert ends[:-1] == [None] * (len(body) - 1) and ends[-1] == len(body)
    assert scanner.payload == 15


def test_connection_header_is_replaced_not_duplicated() -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
    rewritten = http1.with_connection_header(head, close=False)
    assert rewritten == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"


def test_error_pages_look_like_an_albs() -> None:
    page = http1.error_response(503, "Service Temporarily Unavailable", close=False)
    head, body = page.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Temporarily Unavailable\r\n")
    assert b"Server: awselb/2.0" in head
    assert f"Content-Length: {len(body)}".encode() in head


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "value", "ignore_case", "matches"),
    [
        (("green",), "GREEN", True, True),
        (("green",), "GREEN", False, False),
        (("gr*n",), "green", True, True),
        (("gr?en",), "green", True, True),
        (("gr?en",), "grn", True, False),
        (("/api/*",), "/api/v1/x", False, True),
        (("/api/*",), "/apix", False, False),
        (("a.b",), "axb", False, False),  # a dot is literal, not a regex
        (("one", "two"), "two", False, True),
    ],
)
def test_alb_wildcards(patterns: tuple[str, ...], value: str, ignore_case: bool, matches: bool) -> None:
    assert bool(wildcard_regex(patterns, ignore_case=ignore_case).fullmatch(value)) is matches


def listener_with(rules: tuple[Rule, ...], default: Forward | None) -> Listener:
    return Listener("arn:l", "arn:lb", "lb.example", "HTTP", 80, default, rules)


def test_rules_match_by_priority_before_the_default() -> None:
    rules = (
        Rule(20, Forward((("path", 1),)), path_patterns=("/api/*",)),
        Rule(10, Forward((("header", 1),)), http_headers=(("X-Preview", ("gr*n",)),)),
        Rule(30, Forward((("host", 1),)), host_headers=("*.example.com",)),
    )
    groups = {"path": "P", "header": "H", "host": "O", "default": "D"}
    table = compile_listener(listener_with(rules, Forward((("default", 1),))), groups)

    def choose(path: str, headers: dict[bytes, bytes]) -> str | None:
        return table.choose(path, headers.get)

    assert choose("/", {}) == "D"
    assert choose("/api/x", {}) == "P"
    assert choose("/api/x", {b"x-preview": b"GREEN"}) == "H"  # priority 10 beats 20
    assert choose("/", {b"x-preview": b"blue"}) == "D"
    assert choose("/", {b"host": b"shop.example.com:80"}) == "O"
    assert choose("/", {b"host": b"example.org"}) == "D"


def test_a_forward_to_an_unknown_group_or_no_forward_chooses_none() -> None:
    assert compile_listener(listener_with((), Forward((("gone", 1),))), {}).choose("/", {}.get) is None
    assert compile_listener(listener_with((), None), {}).choose("/", {}.get) is None


def test_weighted_choice_follows_weights_and_skips_zero() -> None:
    random.seed(7)
    choice = WeightedChoice.build([("blue", 90), ("green", 10), ("red", 0)])
    picks = Counter(choice.pick() for _ in range(20_000))
    assert picks["red"] == 0
    assert 0.09 <= picks["green"] / 20_000 <= 0.11
    # Every deck of 100 picks splits exactly 90/10, in a random order.
    decks = [[choice.pick() for _ in range(100)] for _ in range(3)]
    assert all(Counter(deck) == {"blue": 90, "green": 10} for deck in decks)
    assert len({tuple(deck) for deck in decks}) == 3
    assert WeightedChoice.build([("blue", 0)]).pick() is None


def test_groups_at_weight_zero_still_count_as_forwarded_to() -> None:
    rules = (Rule(1, Forward((("preview", 1),)), http_headers=(("x", ("y",)),)),)
    listener = listener_with(rules, Forward((("blue", 100), ("green", 0))))
    assert forwarded_groups(listener) == {"blue", "green", "preview"}


# --- health check settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "accepted", "refused"),
    [("200", [200], [201, 500]), ("200,202", [200, 202], [201]), ("200-299", [200, 250, 299], [300, 199])],
)
def test_matcher(text: str, accepted: list[int], refused: list[int]) -> None:
    matcher = Matcher.parse(text)
    assert all(matcher.accepts(code) for code in accepted)
    assert not any(matcher.accepts(code) for code in refused)


@pytest.mark.parametrize("text", ["ok", "200-", "299-200", "600", ""])
def test_bad_matchers_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        Matcher.parse(text)
    assert "200" in str(error.value.hint)


@pytest.mark.parametrize(
    "check",
    [
        HealthCheck(interval_s=5, timeout_s=5),
        HealthCheck(port="http"),
        HealthCheck(protocol="TCP"),
        HealthCheck(healthy_threshold=0),
    ],
)
def test_health_checks_the_plane_cannot_run_are_refused(check: HealthCheck) -> None:
    with pytest.raises(ConfigError, match="Target group tg"):
        validate(check, "tg")


# --- metrics -----------------------------------------------------------------------------------

DIMS = (("LoadBalancer", "app/lb/1"), ("TargetGroup", "targetgroup/tg/2"))


def test_counts_become_nonzero_points_with_the_alb_names() -> None:
    counts = Counts(requests=5)
    for status in (200, 201, 302, 404, 500):
        counts.record_target(status, 0.01)
    counts.record_elb_error(503)
    points = {p.name: p for p in count_points(counts, DIMS, 1000.0)}
    assert {name: p.value for name, p in points.items() if p.unit == "Count"} == {
        "RequestCount": 5,
        "HTTPCode_Target_2XX_Count": 2,
        "HTTPCode_Target_3XX_Count": 1,
        "HTTPCode_Target_4XX_Count": 1,
        "HTTPCode_Target_5XX_Count": 1,
        "HTTPCode_ELB_5XX_Count": 1,
        "HTTPCode_ELB_503_Count": 1,
    }
    assert all(p.dimensions == DIMS and p.timestamp == 1000.0 for p in points.values())
    assert points["TargetResponseTime"].unit == "Seconds"


def test_response_times_are_a_distribution_of_at_most_150_values_per_point() -> None:
    latencies = [0.0005 * 1.0005**i for i in range(8000)]  # 0.5 ms .. 27 ms: ~400 buckets of 1 %
    counts = Counts()
    for latency in latencies:
        counts.record_target(200, latency)
    points = latency_points(counts.latency_buckets, DIMS, 0.0)
    assert len(points) == 3
    assert all(len(p.values) == len(p.counts) <= 150 for p in points)
    assert sum(sum(p.counts) for p in points) == 8000
    total = sum(v * c for p in points for v, c in zip(p.values, p.counts, strict=True))
    assert total / 8000 == pytest.approx(sum(latencies) / 8000, rel=0.005)
    assert min(points[0].values) == pytest.approx(min(latencies), rel=0.01)
    assert max(points[-1].values) == pytest.approx(max(latencies), rel=0.01)
    for p in points:
        assert p.value == pytest.approx(
            sum(v * c for v, c in zip(p.values, p.counts, strict=True)) / sum(p.counts)
        )


def test_an_instant_response_still_counts() -> None:
    counts = Counts()
    counts.record_target(200, 0.0)
    (point,) = latency_points(counts.latency_buckets, DIMS, 0.0)
    assert point.counts == (1.0,) and 0 < point.values[0] < 2e-6


def test_load_balancer_dimension_comes_from_the_arn() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/staging/50dc6c495c0c9188"
    assert lb_dimension(arn) == "app/staging/50dc6c495c0c9188"
