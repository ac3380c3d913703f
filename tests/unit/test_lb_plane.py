"""The load balancer data plane over real loopback sockets, with tiny in-test HTTP servers as targets.

Health checks run every 0.5 s here (AWS's minimum is 5 s) so that state changes show within
seconds; every wait is a bounded poll.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ConfigError, SandboxError
from labkit.sandbox.server.lb import LoadBalancerPlane
from labkit.sandbox.server.topology import (
    Forward,
    GroupTarget,
    HealthCheck,
    Listener,
    MetricPoint,
    Rule,
    TargetGroup,
    TargetHealthReport,
)
from tests.conftest import free_port

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lab/50dc6c495c0c9188"
LB_DIM = "app/lab/50dc6c495c0c9188"
INTERVAL = 0.5
BIG = bytes(range(256)) * 12_000  # 3 MB


# --- targets -----------------------------------------------------------------------------------


class FakeTarget:
    """A keep-alive HTTP/1.1 server on loopback that answers its name and records what it got.

    ``GET /health`` answers ``health_status`` after ``health_delay_s``; ``/slow?s=N`` answers after
    N seconds; ``/chunked`` answers in chunks; ``POST`` echoes the body; anything else answers
    ``status`` with the name as body.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = 200
        self.health_status = 200
        self.health_delay_s = 0.0
        #: (path, headers, client port) of every request but health checks.
        self.seen: list[tuple[str, dict[str, str], int]] = []
        self.health_checks = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes, extra: bytes = b"") -> None:
                head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)
                self.wfile.write(head + body)  # one write: no Nagle delay between head and body

            def do_GET(self) -> None:
                if self.path == "/health":
                    target.health_checks += 1
                    time.sleep(target.health_delay_s)
                    self.answer(target.health_status, b"health")
                    return
                target.seen.append((self.path, dict(self.headers.items()), self.client_address[1]))
                if self.path.startswith("/slow?s="):
                    time.sleep(float(self.path.split("=", 1)[1]))
                    self.answer(200, target.name.encode())
                elif self.path == "/big":
                    self.answer(200, BIG)
                elif self.path == "/chunked":
                    self.wfile.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
                    )
                else:
                    self.answer(target.status, target.name.encode())

            def do_HEAD(self) -> None:
                target.seen.append((self.path, dict(self.headers.items()), self.client_address[1]))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(target.name))

            def do_POST(self) -> None:
                target.seen.append((self.path, dict(self.headers.items()), self.client_address[1]))
                if (self.headers["Transfer-Encoding"] or "").lower() == "chunked":
                    body = read_chunked(self.rfile)
                else:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                self.answer(200, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def target(self) -> GroupTarget:
        return GroupTarget(f"i-{self.name}", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_chunked(rfile: Any) -> bytes:
    """A chunked request body, decoded (BaseHTTPRequestHandler leaves that to the handler)."""
    parts = []
    while True:
        size = int(rfile.readline().split(b";")[0], 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b""):
                pass
            return b"".join(parts)
        parts.append(rfile.read(size))
        rfile.readline()


class ResettingTarget:
    """Accepts connections and closes them at once, unanswered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()


@pytest.fixture()
def targets() -> Iterator[Callable[[str], FakeTarget]]:
    started: list[FakeTarget] = []

    def start(name: str) -> FakeTarget:
        started.append(FakeTarget(name))
        return started[-1]

    yield start
    for each in started:
        each.stop()


@pytest.fixture()
def published() -> list[MetricPoint]:
    return []


@pytest.fixture()
def plane(published: list[MetricPoint]) -> Iterator[LoadBalancerPlane]:
    with LoadBalancerPlane(publish=published.extend, metrics_period_s=0.2) as lb:
        yield lb


# --- topology builders -------------------------------------------------------------------------


def group(
    name: str,
    *members: GroupTarget,
    healthy: int = 2,
    unhealthy: int = 2,
    delay_s: float = 0,
    timeout_s: float = 0.3,
    port: str = "traffic-port",
    matcher: str = "200",
) -> TargetGroup:
    check = HealthCheck(
        path="/health",
        port=port,
        interval_s=INTERVAL,
        timeout_s=timeout_s,
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        matcher=matcher,
    )
    return TargetGroup(f"arn:tg/{name}", name, check, delay_s, members, f"targetgroup/{name}/0f", LB_DIM)


def listener(
    *weights: tuple[str, int],
    rules: tuple[Rule, ...] = (),
    idle_timeout_s: float = 60,
    protocol: str = "HTTP",
    port: int = 80,
    arn: str = "arn:listener/lab",
    desync_mode: str = "defensive",
    drop_invalid: bool = False,
) -> Listener:
    forward = Forward(tuple((f"arn:tg/{name}", weight) for name, weight in weights))
    return Listener(
        arn,
        LB_ARN,
        "lab.elb.localhost",
        protocol,
        port,
        forward,
        rules,
        idle_timeout_s,
        desync_mitigation_mode=desync_mode,
        drop_invalid_header_fields=drop_invalid,
    )


# --- client helpers ----------------------------------------------------------------------------


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def bodies(port: int, count: int, path: str = "/") -> list[str]:
    """``count`` GETs over one kept-alive connection; their bodies."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        out = []
        for _ in range(count):
            conn.request("GET", path)
            out.append(conn.getresponse().read().decode())
        return out
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until ``check()`` holds; the time it took. Fails the test after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout_s} s")


def state_is(plane: LoadBalancerPlane, tg: str, target: FakeTarget, state: str) -> Callable[[], bool]:
    return lambda: plane.health(f"arn:tg/{tg}", f"i-{target.name}").state == state


def port_of(plane: LoadBalancerPlane, arn: str = "arn:listener/lab") -> int:
    port = plane.listener_port(arn)
    assert port is not None
    return port


# --- routing -----------------------------------------------------------------------------------


def test_weighted_split_sends_ten_percent_to_the_small_group(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    blue, green = targets("blue"), targets("green")
    plane.apply(
        [listener(("blue", 90), ("green", 10))],
        [group("blue", blue.target()), group("green", green.target())],
    )
    answers = bodies(port_of(plane), 2000)
    assert set(answers) == {"blue", "green"}
    assert 0.08 <= answers.count("green") / 2000 <= 0.12


def test_a_group_at_weight_zero_gets_nothing(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    blue, green = targets("blue"), targets("green")
    plane.apply(
        [listener(("blue", 1), ("green", 0))], [group("blue", blue.target()), group("green", green.target())]
    )
    assert set(bodies(port_of(plane), 200)) == {"blue"}


def test_rules_come_before_the_default_forward(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    blue, green, preview = targets("blue"), targets("green"), targets("preview")
    rules = (
        Rule(10, Forward((("arn:tg/preview", 1),)), http_headers=(("X-Preview", ("gr*n", "yes")),)),
        Rule(20, Forward((("arn:tg/green", 1),)), path_patterns=("/green/*",)),
    )
    plane.apply(
        [listener(("blue", 1), rules=rules)],
        [group("blue", blue.target()), group("green", green.target()), group("preview", preview.target())],
    )
    port = port_of(plane)
    assert get(port, "/") == (200, "blue")
    assert get(port, "/", {"X-Preview": "GREEN"}) == (200, "preview")
    assert get(port, "/", {"X-Preview": "yes"}) == (200, "preview")
    assert get(port, "/", {"X-Preview": "no"}) == (200, "blue")
    assert get(port, "/green/x") == (200, "green")
    assert get(port, "/green/x", {"X-Preview": "yes"}) == (200, "preview")  # priority 10 first


def test_round_robin_within_a_group(plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]) -> None:
    a, b, c = targets("a"), targets("b"), targets("c")
    plane.apply([listener(("fleet", 1))], [group("fleet", a.target(), b.target(), c.target())])
    # Each turns healthy on its first check; until all have, the routable set changes under the test.
    for each in (a, b, c):
        wait_for(state_is(plane, "fleet", each, "healthy"), 5, f"{each.name} healthy")
    answers = bodies(port_of(plane), 30)
    cycle = answers[:3]
    assert sorted(cycle) == ["a", "b", "c"]
    assert answers == cycle * 10


def test_a_weight_change_routes_the_next_request(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    blue, green = targets("blue"), targets("green")
    groups = [group("blue", blue.target()), group("green", green.target())]
    plane.apply([listener(("blue", 100), ("green", 0))], groups)
    port = port_of(plane)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one kept-alive client throughout
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"blue"
    applied = time.monotonic()
    plane.apply([listener(("blue", 0), ("green", 100))], groups)
    answers = []
    for _ in range(20):
        conn.request("GET", "/")
        answers.append(conn.getresponse().read())
    took = time.monotonic() - applied
    conn.close()
    assert answers == [b"green"] * 20
    assert took < 1.0, f"20 requests after the change took {took:.2f} s"
    assert port_of(plane) == port  # a reconcile does not move the listener


# --- health checks -----------------------------------------------------------------------------


def test_health_goes_initial_healthy_unhealthy_with_the_reason(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    app.health_delay_s = 0.2  # the first check takes this long: "initial" until it answers
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), healthy=2, unhealthy=3)])
    first = plane.health("arn:tg/tg", "i-app")
    assert (first.state, first.reason) == ("initial", "Elb.InitialHealthChecking")
    wait_for(state_is(plane, "tg", app, "healthy"), 5, "healthy after its first good check")
    assert plane.health("arn:tg/tg", "i-app") == TargetHealthReport("healthy")
    app.health_delay_s = 0

    app.health_status = 500
    broke = time.monotonic()
    wait_for(state_is(plane, "tg", app, "unhealthy"), 3 * INTERVAL + 3, "unhealthy after 3 failed checks")
    # Three failed checks need at least two intervals between the first and the third.
    assert time.monotonic() - broke >= 2 * INTERVAL - 0.05
    report = plane.health("arn:tg/tg", "i-app")
    assert report.reason == "Target.ResponseCodeMismatch"
    assert report.description == "Health checks failed with these codes: [500]"

    app.health_status = 200
    wait_for(state_is(plane, "tg", app, "healthy"), 5, "healthy again")


def test_a_slow_health_check_is_a_timeout_and_a_refused_one_failed(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    slow, gone = targets("slow"), targets("gone")
    gone.stop()
    slow.health_delay_s = 0.45  # beyond the 0.3 s timeout
    plane.apply([listener(("tg", 1))], [group("tg", slow.target(), gone.target())])
    wait_for(state_is(plane, "tg", slow, "unhealthy"), 5, "slow target unhealthy")
    wait_for(state_is(plane, "tg", gone, "unhealthy"), 5, "stopped target unhealthy")
    assert plane.health("arn:tg/tg", "i-slow").reason == "Target.Timeout"
    assert plane.health("arn:tg/tg", "i-gone").reason == "Target.FailedHealthChecks"


def test_matcher_ranges_and_a_numbered_health_check_port(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app, sidecar = targets("app"), targets("sidecar")
    app.health_status = 204
    app_target = app.target()
    plane.apply(
        [listener(("ranged", 1), ("numbered", 1))],
        [
            group("ranged", app_target, matcher="200-299"),
            # The health check goes to the sidecar's port, not the traffic port.
            group("numbered", GroupTarget("i-app", app.port), port=str(sidecar.port)),
        ],
    )
    wait_for(lambda: plane.health("arn:tg/ranged", "i-app").state == "healthy", 5, "204 within 200-299")
    wait_for(lambda: plane.health("arn:tg/numbered", "i-app").state == "healthy", 5, "sidecar port checked")
    assert sidecar.health_checks > 0


def test_unhealthy_targets_get_no_traffic_while_the_group_has_healthy_ones(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    good, bad = targets("good"), targets("bad")
    bad.health_status = 503
    plane.apply([listener(("tg", 1))], [group("tg", good.target(), bad.target())])
    wait_for(state_is(plane, "tg", good, "healthy"), 5, "good healthy")
    wait_for(state_is(plane, "tg", bad, "unhealthy"), 5, "bad unhealthy")
    assert set(bodies(port_of(plane), 40)) == {"good"}


def test_fail_open_when_every_target_is_unhealthy(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    a, b = targets("a"), targets("b")
    a.health_status = b.health_status = 500
    plane.apply([listener(("tg", 1))], [group("tg", a.target(), b.target())])
    wait_for(state_is(plane, "tg", a, "unhealthy"), 5, "a unhealthy")
    wait_for(state_is(plane, "tg", b, "unhealthy"), 5, "b unhealthy")
    assert sorted(set(bodies(port_of(plane), 20))) == ["a", "b"]


def test_initial_targets_serve_when_none_is_healthy(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    app.health_status = 500  # failing checks, but not yet unhealthy_threshold of them: still initial
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), unhealthy=10)])
    assert plane.health("arn:tg/tg", "i-app").state == "initial"
    assert get(port_of(plane)) == (200, "app")
    assert plane.health("arn:tg/tg", "i-app").state == "initial"


def test_unused_and_unregistered_targets(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    blue, green = targets("blue"), targets("green")
    groups = [group("blue", blue.target()), group("green", green.target())]
    plane.apply([listener(("blue", 1))], groups)
    report = plane.health("arn:tg/green", "i-green")
    assert (report.state, report.reason) == ("unused", "Target.NotInUse")
    time.sleep(3 * INTERVAL)
    assert green.health_checks == 0  # an unused group is not checked
    assert plane.health("arn:tg/blue", "i-nobody").reason == "Target.NotRegistered"

    # In a listener at weight 0 the group is in use: checked, and healthy in time.
    green.health_delay_s = 0.2  # "initial" until its first check answers
    plane.apply([listener(("blue", 1), ("green", 0))], groups)
    assert plane.health("arn:tg/green", "i-green").state == "initial"
    wait_for(state_is(plane, "green", green, "healthy"), 5, "green healthy at weight 0")


# --- errors from the load balancer -------------------------------------------------------------


def test_503_for_a_group_without_targets_or_no_forward(plane: LoadBalancerPlane) -> None:
    plane.apply([listener(("empty", 1))], [group("empty")])
    status, body = get(port_of(plane))
    assert status == 503 and "503 Service Temporarily Unavailable" in body
    plane.apply([listener(("empty", 0))], [group("empty")])
    assert get(port_of(plane))[0] == 503


def test_502_when_the_target_refuses_or_resets(plane: LoadBalancerPlane) -> None:
    resetting = ResettingTarget()
    plane.apply(
        [listener(("refused", 1)), listener(("reset", 1), arn="arn:listener/reset")],
        [
            group("refused", GroupTarget("i-refused", free_port()), GroupTarget("i-down", None)),
            group("reset", GroupTarget("i-r", resetting.port)),
        ],
    )
    port = port_of(plane)
    assert [get(port)[0] for _ in range(4)] == [502] * 4  # both the closed port and the one with no process
    assert get(port_of(plane, "arn:listener/reset"))[0] == 502
    resetting.sock.close()


def test_504_when_the_target_is_silent_past_the_idle_timeout(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1), idle_timeout_s=0.5)], [group("tg", app.target())])
    started = time.monotonic()
    status, body = get(port_of(plane), "/slow?s=3")
    assert status == 504 and "Gateway Time-out" in body
    assert time.monotonic() - started < 2.5
    assert get(port_of(plane), "/slow?s=0.1") == (200, "app")  # the listener carries on


# --- draining ----------------------------------------------------------------------------------


def test_a_deregistered_target_drains_its_in_flight_request_and_gets_no_new_ones(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    old, new = targets("old"), targets("new")
    plane.apply([listener(("tg", 1))], [group("tg", old.target(), delay_s=2.5)])
    port = port_of(plane)
    in_flight: list[tuple[int, str]] = []
    request = threading.Thread(target=lambda: in_flight.append(get(port, "/slow?s=1.2")))
    request.start()
    wait_for(lambda: len(old.seen) == 1, 5, "the slow request reached the old target")

    plane.apply([listener(("tg", 1))], [group("tg", new.target(), delay_s=2.5)])
    report = plane.health("arn:tg/tg", "i-old")
    assert (report.state, report.reason) == ("draining", "Target.DeregistrationInProgress")
    assert set(bodies(port, 10)) == {"new"}
    request.join(10)
    assert in_flight == [(200, "old")]
    assert len(old.seen) == 1

    wait_for(lambda: plane.health("arn:tg/tg", "i-old").reason == "Target.NotRegistered", 5, "drain ends")


def test_a_target_registered_again_while_draining_keeps_its_requests_and_starts_over(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), delay_s=5)])
    wait_for(state_is(plane, "tg", app, "healthy"), 5, "healthy")
    port = port_of(plane)
    in_flight: list[tuple[int, str]] = []
    request = threading.Thread(target=lambda: in_flight.append(get(port, "/slow?s=1")))
    request.start()
    wait_for(lambda: len(app.seen) == 1, 5, "the slow request reached the target")
    plane.apply([listener(("tg", 1))], [group("tg", delay_s=5)])
    assert plane.health("arn:tg/tg", "i-app").state == "draining"
    app.health_delay_s = 0.2  # "initial" until its first check answers
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), delay_s=5)])
    assert plane.health("arn:tg/tg", "i-app").state == "initial"
    request.join(10)
    assert in_flight == [(200, "app")]
    wait_for(state_is(plane, "tg", app, "healthy"), 5, "healthy again")
    assert get(port) == (200, "app")


def test_a_request_still_running_when_the_delay_ends_is_cut(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), delay_s=0.3)])
    port = port_of(plane)
    outcome: list[object] = []

    def slow() -> None:
        try:
            outcome.append(get(port, "/slow?s=3"))
        except (http.client.HTTPException, OSError) as error:
            outcome.append(error)

    request = threading.Thread(target=slow)
    request.start()
    wait_for(lambda: len(app.seen) == 1, 5, "the request reached the target")
    plane.apply([listener(("tg", 1))], [group("tg")])
    request.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], (http.client.HTTPException, OSError))


# --- HTTP details ------------------------------------------------------------------------------


def test_forwarded_headers_are_added_and_hop_by_hop_ones_dropped(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply(
        [listener(("tg", 1)), listener(("tg", 1), protocol="HTTPS", port=443, arn="arn:listener/tls")],
        [group("tg", app.target())],
    )
    get(port_of(plane), "/", {"X-Forwarded-For": "203.0.113.7", "Host": "lab.example", "Keep-Alive": "5"})
    get(port_of(plane, "arn:listener/tls"), "/")
    (_, plain, _), (_, tls, _) = app.seen
    assert plain["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert (plain["x-forwarded-proto"], plain["x-forwarded-port"]) == ("http", "80")
    assert plain["host"] == "lab.example"
    assert "keep-alive" not in plain
    assert (tls["x-forwarded-for"], tls["x-forwarded-proto"], tls["x-forwarded-port"]) == (
        "127.0.0.1",
        "https",
        "443",
    )


def test_client_keep_alive_and_target_connection_reuse(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    assert bodies(port_of(plane), 50) == ["app"] * 50
    assert len({client_port for _, _, client_port in app.seen}) == 1  # one pooled connection served all


def test_idle_client_and_target_connections_close_after_the_idle_timeout(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1), idle_timeout_s=0.5)], [group("tg", app.target())])
    conn = http.client.HTTPConnection("127.0.0.1", port_of(plane), timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"app"
    sock = conn.sock
    assert sock is not None
    sock.settimeout(5)
    assert sock.recv(1) == b""  # the load balancer closed the idle client connection
    conn.close()
    get(port_of(plane))
    # The pooled connection to the target was closed too: the second request came on a new one.
    assert len({client_port for _, _, client_port in app.seen}) == 2


def test_post_bodies_and_chunked_responses_pass_through(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    conn = http.client.HTTPConnection("127.0.0.1", port_of(plane), timeout=10)
    payload = json.dumps({"hello": "x" * 100_000}).encode()
    conn.request("POST", "/echo", body=payload, headers={"Content-Type": "application/json"})
    assert conn.getresponse().read() == payload
    conn.request("GET", "/chunked")
    assert conn.getresponse().read() == b"abcdefg"
    conn.request("GET", "/")  # the same client connection still works after a chunked response
    assert conn.getresponse().read() == b"app"
    conn.close()


def test_head_pipelining_expect_continue_and_large_responses(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    port = port_of(plane)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert (head.status, head.getheader("Content-Length"), head.read()) == (200, "3", b"")
    conn.request("GET", "/big")  # 3 MB through the proxy's flow control
    assert conn.getresponse().read() == BIG
    conn.close()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"app") < 2:
            received += sock.recv(65536)
        assert received.count(b"HTTP/1.1 200") == 2
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert sock.recv(1024).endswith(b"\r\n\r\nhello")
    assert [path for path, _, _ in app.seen] == ["/", "/big", "/one", "/two", "/echo"]


def test_a_body_over_the_limit_gets_413(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 413 ")
    assert app.seen == []


def test_a_malformed_request_gets_400(plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400 Bad Request")
    assert app.seen == []


# --- listeners and input -----------------------------------------------------------------------


def test_listener_ports_requested_taken_and_removed(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    wanted = free_port()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = int(busy.getsockname()[1])
        plane.apply(
            [listener(("tg", 1)), listener(("tg", 1), arn="arn:listener/second")],
            [group("tg", app.target())],
            ports={"arn:listener/lab": wanted, "arn:listener/second": taken},
        )
        assert plane.listener_port("arn:listener/lab") == wanted
        second = port_of(plane, "arn:listener/second")
        assert second != taken
    assert get(second) == (200, "app")

    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    assert plane.listener_port("arn:listener/second") is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", second), timeout=2)


def test_bad_input_is_refused_and_changes_nothing(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    port = port_of(plane)
    with pytest.raises(ConfigError, match="matcher"):
        plane.apply([listener(("other", 1))], [group("other", app.target(), matcher="ok")])
    with pytest.raises(ConfigError, match="weight"):
        plane.apply([listener(("tg", 1000))], [group("tg", app.target())])
    assert port_of(plane) == port
    assert plane.listener_port("arn:listener/lab") == port
    assert get(port) == (200, "app")


def test_close_is_prompt_with_requests_and_drains_in_flight(
    published: list[MetricPoint], targets: Callable[[str], FakeTarget]
) -> None:
    app = targets("app")
    plane = LoadBalancerPlane(publish=published.extend, metrics_period_s=10)
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), delay_s=60)])
    port = port_of(plane)
    cut: list[BaseException] = []

    def slow() -> None:
        try:
            get(port, "/slow?s=5")
        except (http.client.HTTPException, OSError) as error:
            cut.append(error)

    request = threading.Thread(target=slow, daemon=True)
    request.start()
    wait_for(lambda: len(app.seen) == 1, 5, "request in flight")
    plane.apply([listener(("tg", 1))], [group("tg", delay_s=60)])  # draining for a minute
    started = time.monotonic()
    plane.close()
    assert time.monotonic() - started < 5
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    plane.close()  # twice is fine
    request.join(5)
    assert len(cut) == 1  # the in-flight request was cut, not left hanging


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_plane_process_ends_with_close_and_with_its_owner(tmp_path: Path) -> None:
    with LoadBalancerPlane(publish=lambda points: None) as plane:
        pid = plane.pid
        assert running(pid)
    assert not running(pid)

    # An owner killed outright (SIGKILL, no close) must not leave the plane's process behind.
    script = tmp_path / "owner.py"
    script.write_text(
        "import time\n"
        "from labkit.sandbox.server.lb import LoadBalancerPlane\n"
        "plane = LoadBalancerPlane(publish=lambda points: None)\n"
        "print(plane.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert owner.stdout is not None
            orphan = int(owner.stdout.readline())
            assert running(orphan)
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait(10)
            wait_for(lambda: not running(orphan), 10, "the plane's process to exit after its owner died")
        finally:
            owner.kill()  # the with block then closes the pipe and waits


def test_a_dead_plane_process_is_reported_with_a_hint(targets: Callable[[str], FakeTarget]) -> None:
    app = targets("app")
    with LoadBalancerPlane(publish=lambda points: None) as plane:
        os.kill(plane.pid, signal.SIGKILL)
        wait_for(lambda: not running(plane.pid), 5, "the plane's process to die")
        with pytest.raises(SandboxError, match="has exited") as error:
            plane.apply([listener(("tg", 1))], [group("tg", app.target())])
        assert "sandbox" in str(error.value.hint)


# --- metrics -----------------------------------------------------------------------------------


def sums(points: list[MetricPoint], name: str, dimensions: tuple[tuple[str, str], ...]) -> float:
    return sum(p.value for p in points if p.name == name and p.dimensions == dimensions)


def test_metrics_are_published_per_group_and_load_balancer(
    published: list[MetricPoint], targets: Callable[[str], FakeTarget]
) -> None:
    blue, green = targets("blue"), targets("green")
    green.status = 500
    groups = [group("blue", blue.target()), group("green", green.target()), group("empty")]
    with LoadBalancerPlane(publish=published.extend, metrics_period_s=0.2) as plane:
        plane.apply([listener(("blue", 1), ("green", 0), ("empty", 0))], groups)
        port = port_of(plane)
        bodies(port, 30)
        plane.apply([listener(("blue", 0), ("green", 1), ("empty", 0))], groups)
        bodies(port, 20)
        plane.apply([listener(("blue", 0), ("green", 0), ("empty", 1))], groups)
        bodies(port, 5)
        wait_for(
            lambda: any(p.name == "HealthyHostCount" and p.value == 1 for p in published), 5, "host counts"
        )

    def dims(name: str) -> tuple[tuple[str, str], ...]:
        return (("LoadBalancer", LB_DIM), ("TargetGroup", f"targetgroup/{name}/0f"))

    lb = (("LoadBalancer", LB_DIM),)
    assert sums(published, "RequestCount", dims("blue")) == 30
    assert sums(published, "HTTPCode_Target_2XX_Count", dims("blue")) == 30
    assert sums(published, "RequestCount", dims("green")) == 20
    assert sums(published, "HTTPCode_Target_5XX_Count", dims("green")) == 20
    assert sums(published, "HTTPCode_ELB_5XX_Count", dims("empty")) == 5
    assert sums(published, "RequestCount", dims("empty")) == 0  # no target was chosen
    assert sums(published, "RequestCount", lb) == 50
    assert sums(published, "HTTPCode_ELB_5XX_Count", lb) == 5

    times = [p for p in published if p.name == "TargetResponseTime" and p.dimensions == dims("blue")]
    assert sum(sum(p.counts) for p in times) == 30
    assert all(p.unit == "Seconds" and 0 < p.value < 1 for p in times)
    healthy = [p for p in published if p.name == "HealthyHostCount" and p.dimensions == dims("blue")]
    assert healthy and {p.value for p in healthy} <= {0.0, 1.0}
    assert any(p.name == "UnHealthyHostCount" and p.dimensions == dims("green") for p in published)
    # Each period's points carry the period's start, on the 0.2 s grid.
    assert all(abs(p.timestamp / 0.2 - round(p.timestamp / 0.2)) < 1e-6 for p in published)
    assert all(time.time() - 60 < p.timestamp <= time.time() for p in published)


def test_a_failing_publisher_does_not_stop_traffic(targets: Callable[[str], FakeTarget]) -> None:
    app = targets("app")
    calls: list[int] = []

    def broken(points: list[MetricPoint]) -> None:
        calls.append(len(points))
        raise RuntimeError("CloudWatch is down")

    with LoadBalancerPlane(publish=broken, metrics_period_s=0.1) as plane:
        plane.apply([listener(("tg", 1))], [group("tg", app.target())])
        bodies(port_of(plane), 5)
        wait_for(lambda: len(calls) >= 2, 5, "the publisher was called again after failing")
        assert get(port_of(plane)) == (200, "app")


# --- HTTP/1.1 as an ALB speaks it (raw sockets: the client is independent of the proxy's parser) ---
#
# AWS sources the docstrings cite:
# [desync] ALB user guide, "Desync mitigation mode", and http-desync-guardian's docs/README.md
#   (github.com/aws/http-desync-guardian): Compliant / Acceptable / Ambiguous / Severe; defensive mode
#   allows Ambiguous requests but "route[s] the requests but closes the client and target connections",
#   blocks Severe; strictest blocks Acceptable, Ambiguous and Severe; blocked requests get 400 and the
#   client connection is closed.
# [quotas] ALB user guide, "Quotas for your Application Load Balancers", HTTP headers: request line
#   16K, single header 16K, whole request header 64K (ALB troubleshooting: HTTP 400 when exceeded).
# [attrs] ALB user guide, load balancer attributes: routing.http.drop_invalid_header_fields.enabled:
#   "Elastic Load Balancing requires that message header names conform to the regular expression
#   [-A-Za-z0-9]+"; invalid ones are removed (true) or routed to targets (false, the default).
# [408] ALB troubleshooting, HTTP 408: "The client did not send data before the idle timeout period
#   expired."
# [health] ALB user guide, "Health checks for Application Load Balancer target groups": "After your
#   target is registered, it must pass one health check to be considered healthy"; HealthyThresholdCount
#   is "the number of consecutive health checks successes required before considering an unhealthy
#   target healthy".

SMUGGLE = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n"
)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return response.status, headers, response.read()


def send(port: int, raw: bytes, pieces: int = 1) -> tuple[int, dict[str, str], bytes, bool]:
    """``raw`` in ``pieces`` writes on a new connection: the response and whether the LB then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        size = -(-len(raw) // pieces)
        try:
            for start in range(0, len(raw), size):
                sock.sendall(raw[start : start + size])
                if pieces > 1:
                    time.sleep(0.002)
        except OSError:
            pass  # the load balancer answered and closed before the rest was sent
        status, headers, body = read_response(sock)
        sock.settimeout(3)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        return status, headers, body, closed


def test_defensive_mode_routes_an_ambiguous_request_then_closes_both_connections(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[desync] Both Content-Length and Transfer-Encoding (guardian's BothTeClPresent) is Ambiguous:
    in defensive mode, the default, it is routed and then the client and target connections close.
    It reaches the target framed one way only (chunked; RFC 9112 6.3: the Content-Length removed)."""
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    port = port_of(plane)
    status, headers, body, closed = send(port, SMUGGLE + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body, headers["connection"], closed) == (200, b"abc", "close", True)
    ((path, seen, first_port),) = app.seen  # the request pipelined behind it was not served
    assert path == "/echo" and seen["transfer-encoding"] == "chunked" and "content-length" not in seen
    assert get(port) == (200, "app")
    assert app.seen[-1][2] != first_port  # the target connection was closed, not pooled


def test_strictest_mode_refuses_ambiguous_and_acceptable_requests_with_400(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[desync] Strictest mode blocks what is not Compliant: Ambiguous (BothTeClPresent) and
    Acceptable (GetHeadZeroContentLength) requests get 400 and the client connection is closed."""
    app = targets("app")
    plane.apply([listener(("tg", 1), desync_mode="strictest")], [group("tg", app.target())])
    port = port_of(plane)
    zero_length_get = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    for raw in (SMUGGLE, zero_length_get):
        status, headers, _, closed = send(port, raw)
        assert (status, headers["server"], closed) == (400, "awselb/2.0", True)
    assert app.seen == []
    assert send(port, GET)[0] == 200  # a compliant request is served


def test_monitor_mode_routes_an_ambiguous_request_and_keeps_the_connections(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[desync] Monitor mode only counts (DesyncMitigationMode_NonCompliant_Request_Count): an
    Ambiguous request is routed and the connection stays open for the next one."""
    app = targets("app")
    plane.apply([listener(("tg", 1), desync_mode="monitor")], [group("tg", app.target())])
    with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as sock:
        sock.sendall(SMUGGLE)
        status, headers, body = read_response(sock)
        assert (status, body) == (200, b"abc") and headers.get("connection") != "close"
        sock.sendall(GET)
        assert read_response(sock)[::2] == (200, b"app")
    assert [path for path, _, _ in app.seen] == ["/echo", "/"]


SEVERE = [
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",  # BadTransferEncoding
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4a\r\n\r\nabcd",  # BadContentLength
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",  # Multiple
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",  # BadHeader: a null character
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",  # BadHeader: a CR
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",  # a control character
    b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",  # BadUri
    b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",  # a bare LF in the head
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LFs only: refused at once, not left waiting
    b"GET / HTTP/9.1\r\nHost: x\r\n\r\n",  # BadVersion
]


@pytest.mark.parametrize("mode", ["monitor", "defensive", "strictest"])
def test_severe_requests_get_400_in_every_mode(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget], mode: str
) -> None:
    """[desync] Severe requests (BadTransferEncoding, BadContentLength, MultipleContentLength,
    BadHeader, BadUri, BadVersion, bare LF) get 400 and a closed connection; the load balancer cannot
    tell where such a request ends, so in the sandbox this holds in every mode, monitor included."""
    app = targets("app")
    plane.apply([listener(("tg", 1), desync_mode=mode)], [group("tg", app.target())])
    for raw in SEVERE:
        status, _, _, closed = send(port_of(plane), raw)
        assert (status, closed) == (400, True), raw
    assert app.seen == []


def test_header_limits_get_400_however_the_bytes_arrive(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[quotas] Request line 16K, single header 16K, whole request header 64K: over any of them the
    load balancer answers 400 itself, in one write or in many; just under them the request passes."""
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    port = port_of(plane)
    fill = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"a" * 14_000) for i in range(5))  # 70 KB in all
    too_big = [
        b"GET / HTTP/1.1\r\nHost: x\r\n" + fill + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for raw in too_big:
        for pieces in (1, 40):
            status, _, _, closed = send(port, raw, pieces)
            assert (status, closed) == (400, True), (raw[:40], pieces)
    assert app.seen == []
    fits = b"GET / HTTP/1.1\r\nHost: x\r\n" + fill[: 4 * len(fill) // 5] + b"\r\n"  # 56 KB, 14 KB each
    for pieces in (1, 40):
        assert send(port, fits, pieces)[0] == 200
    assert len(app.seen[-1][1]["x-fill-3"]) == 14_000


def test_invalid_header_names_are_dropped_only_when_the_attribute_says_so(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[attrs] routing.http.drop_invalid_header_fields.enabled: names outside [-A-Za-z0-9]+ are
    removed when true, routed to the target when false (the default)."""
    app = targets("app")
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX_Under: 1\r\nX.Dot: 2\r\nX-Fine-9: 3\r\n\r\n"
    for drop in (False, True):
        plane.apply([listener(("tg", 1), drop_invalid=drop)], [group("tg", app.target())])
        assert send(port_of(plane), raw)[0] == 200
    (_, kept, _), (_, dropped, _) = app.seen
    assert (kept["x_under"], kept["x.dot"], kept["x-fine-9"]) == ("1", "2", "3")
    assert "x_under" not in dropped and "x.dot" not in dropped and dropped["x-fine-9"] == "3"


def test_connection_tokens_are_parsed_not_substring_matched(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """RFC 9110 7.6.1 (which ALB follows for hop-by-hop headers): Connection lists options and header
    names; "x-enclosed" is not "close", and a header it names goes no further than the load balancer."""
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: x-enclosed, X-Secret\r\nX-Secret: s\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as sock:
        for _ in range(2):  # the connection stays open for a second request
            sock.sendall(raw)
            status, headers, _ = read_response(sock)
            assert status == 200 and headers.get("connection") != "close"
    assert all("x-secret" not in seen and "x-enclosed" not in seen for _, seen, _ in app.seen)
    status, headers, _, closed = send(
        port_of(plane), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"
    )
    assert (status, headers["connection"], closed) == (200, "close", True)


def test_a_partial_request_gets_408_after_the_idle_timeout(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[408] A client that sends part of a request (its head, or part of its body) and then nothing
    for the idle timeout gets 408 from the load balancer, and the connection closes."""
    app = targets("app")
    plane.apply([listener(("tg", 1), idle_timeout_s=0.5)], [group("tg", app.target())])
    partials = (
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc",
    )
    for partial in partials:
        with socket.create_connection(("127.0.0.1", port_of(plane)), timeout=5) as sock:
            sock.sendall(partial)
            status, headers, _ = read_response(sock)
            assert (status, headers["connection"]) == (408, "close")
            assert sock.recv(1) == b""
    assert app.seen == []


def test_a_new_target_is_healthy_after_one_check_and_a_returning_one_after_the_threshold(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """[health] A newly registered target needs one passing health check; a target coming back from
    unhealthy needs HealthyThresholdCount consecutive ones."""
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target(), healthy=4, unhealthy=2)])
    wait_for(state_is(plane, "tg", app, "healthy"), 5, "healthy")
    assert app.health_checks <= 2  # the first made it healthy (a second may have started since)
    app.health_status = 500
    wait_for(state_is(plane, "tg", app, "unhealthy"), 5, "unhealthy")
    app.health_status = 200
    restored_at = app.health_checks
    wait_for(state_is(plane, "tg", app, "healthy"), 10, "healthy again")
    # Four passing checks; the one in flight when the status changed may have been one of them.
    assert app.health_checks - restored_at >= 3


def test_a_chunked_upload_in_one_byte_chunks_arrives_whole(
    plane: LoadBalancerPlane, targets: Callable[[str], FakeTarget]
) -> None:
    """Chunked request bodies pass through however they are cut (scanned once, as they arrive)."""
    app = targets("app")
    plane.apply([listener(("tg", 1))], [group("tg", app.target())])
    payload = bytes(range(256)) * 200
    body = b"".join(b"1\r\n%c\r\n" % byte for byte in payload) + b"0\r\n\r\n"
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    status, _, echoed, _ = send(port_of(plane), raw, pieces=300)
    assert (status, echoed) == (200, payload)


def test_client_connections_beyond_the_cap_get_503(
    published: list[MetricPoint], targets: Callable[[str], FakeTarget]
) -> None:
    """The plane's one loop serves every listener, so it caps client connections: one more gets 503
    (as an ALB's ELB 503 when it cannot take the request) and a freed place is taken again."""
    app = targets("app")
    with LoadBalancerPlane(publish=published.extend, metrics_period_s=0.2, max_client_connections=3) as plane:
        plane.apply([listener(("tg", 1))], [group("tg", app.target())])
        port = port_of(plane)
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(GET)
                assert read_response(sock)[0] == 200
            status, _, _, closed = send(port, GET)
            assert (status, closed) == (503, True)
            held.pop().close()
            wait_for(lambda: send(port, GET)[0] == 200, 5, "a freed place served")
        finally:
            for sock in held:
                sock.close()
