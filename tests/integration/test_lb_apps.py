"""The load balancer data plane in front of real release apps (gunicorn through AppProcess).

Health checks use the app's readiness endpoint every second, as the sandbox's target groups do
with short settings; every wait is a bounded poll.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release
from labkit.sandbox.server.lb import LoadBalancerPlane
from labkit.sandbox.server.topology import (
    Forward,
    GroupTarget,
    HealthCheck,
    Listener,
    MetricPoint,
    TargetGroup,
)

pytestmark = pytest.mark.integration

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lab/50dc6c495c0c9188"
CHECK = HealthCheck(
    path="/health/ready", interval_s=1, timeout_s=0.5, healthy_threshold=2, unhealthy_threshold=2
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lb-apps")


def start_app(home: Path, artifact: Path, color: str, instance_id: str) -> AppProcess:
    release = unpack_release(artifact, home / instance_id)
    return AppProcess.start(
        release, color=color, instance_id=instance_id, log_path=home / f"{instance_id}.log", drain_s=0.2
    )


@pytest.fixture(scope="module")
def apps(home: Path) -> Iterator[dict[str, AppProcess]]:
    """blue and green on release 1.0.0, and "broken": 2.0.0 whose readiness always fails."""
    good = build_release("1.0.0", None, home / "good")
    broken = build_release("2.0.0", {"ready": "fail"}, home / "broken")
    started: dict[str, AppProcess] = {}
    try:
        started["blue"] = start_app(home, good, "blue", "i-0b1e")
        started["green"] = start_app(home, good, "green", "i-06e3")
        started["broken"] = start_app(home, broken, "green", "i-0bad")
        yield started
    finally:
        for app in started.values():
            app.stop(timeout=10)


@pytest.fixture()
def plane() -> Iterator[LoadBalancerPlane]:
    points: list[MetricPoint] = []
    with LoadBalancerPlane(publish=points.extend, metrics_period_s=1) as lb:
        yield lb


def group(name: str, *apps: AppProcess, delay_s: float = 0) -> TargetGroup:
    targets = tuple(GroupTarget(app.instance_id, app.port) for app in apps)
    return TargetGroup(
        f"arn:tg/{name}", name, CHECK, delay_s, targets, f"targetgroup/{name}/0f", "app/lab/50dc6c495c0c9188"
    )


def listener(*weights: tuple[str, int], desync_mode: str = "defensive") -> Listener:
    forward = Forward(tuple((f"arn:tg/{name}", weight) for name, weight in weights))
    return Listener(
        "arn:listener/lab",
        LB_ARN,
        "lab.elb.localhost",
        "HTTP",
        80,
        forward,
        desync_mitigation_mode=desync_mode,
    )


def answers(plane: LoadBalancerPlane, count: int, path: str = "/") -> list[tuple[int, dict[str, str]]]:
    """``count`` GETs over one kept-alive connection: (status, JSON body) of each."""
    port = plane.listener_port("arn:listener/lab")
    assert port is not None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    out = []
    try:
        for _ in range(count):
            conn.request("GET", path)
            response = conn.getresponse()
            out.append((response.status, json.loads(response.read())))
    finally:
        conn.close()
    return out


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout_s} s")


def state_is(plane: LoadBalancerPlane, tg: str, app: AppProcess, state: str) -> Callable[[], bool]:
    return lambda: plane.health(f"arn:tg/{tg}", app.instance_id).state == state


def test_ninety_ten_over_real_apps(plane: LoadBalancerPlane, apps: dict[str, AppProcess]) -> None:
    plane.apply(
        [listener(("blue", 90), ("green", 10))], [group("blue", apps["blue"]), group("green", apps["green"])]
    )
    for color in ("blue", "green"):
        wait_for(state_is(plane, color, apps[color], "healthy"), 10, f"{color} healthy")
    results = answers(plane, 2000)
    assert {status for status, _ in results} == {200}
    colors = Counter(body["color"] for _, body in results)
    assert 0.08 <= colors["green"] / 2000 <= 0.12
    assert {body["version"] for _, body in results} == {"1.0.0"}
    # The app logs the client the load balancer forwarded for.
    assert "fwd=127.0.0.1" in (apps["blue"].log_path).read_text()


def test_failing_readiness_turns_unhealthy_and_loses_traffic_then_fails_open(
    plane: LoadBalancerPlane, apps: dict[str, AppProcess]
) -> None:
    blue, broken = apps["blue"], apps["broken"]
    plane.apply([listener(("fleet", 1))], [group("fleet", blue, broken)])
    started = time.monotonic()
    wait_for(
        lambda: plane.health("arn:tg/fleet", broken.instance_id).state == "unhealthy", 8, "broken unhealthy"
    )
    # Two failed checks one interval apart, from registration.
    assert time.monotonic() - started >= CHECK.interval_s * (CHECK.unhealthy_threshold - 1) - 0.1
    report = plane.health("arn:tg/fleet", broken.instance_id)
    assert report.reason == "Target.ResponseCodeMismatch"
    assert report.description == "Health checks failed with these codes: [503]"
    wait_for(state_is(plane, "fleet", blue, "healthy"), 8, "blue healthy")
    assert {body["instance_id"] for _, body in answers(plane, 40)} == {blue.instance_id}

    # Alone in its group, the unhealthy target still gets the group's traffic (fail-open).
    plane.apply([listener(("fleet", 1))], [group("fleet", broken)])
    assert {(status, body["version"]) for status, body in answers(plane, 10)} == {(200, "2.0.0")}


def test_a_killed_app_turns_unhealthy_and_traffic_moves_on(
    plane: LoadBalancerPlane, apps: dict[str, AppProcess], home: Path
) -> None:
    doomed = start_app(home, build_release("1.0.0", None, home / "doomed"), "blue", "i-0dead")
    try:
        plane.apply([listener(("fleet", 1))], [group("fleet", apps["blue"], doomed)])
        wait_for(state_is(plane, "fleet", doomed, "healthy"), 10, "healthy")
        doomed.kill()
        wait_for(
            lambda: plane.health("arn:tg/fleet", doomed.instance_id).state == "unhealthy", 8, "unhealthy"
        )
        assert plane.health("arn:tg/fleet", doomed.instance_id).reason == "Target.FailedHealthChecks"
        assert {(status, body["instance_id"]) for status, body in answers(plane, 20)} == {
            (200, apps["blue"].instance_id)
        }
    finally:
        doomed.kill()


def test_a_deregistered_app_finishes_its_in_flight_request(
    plane: LoadBalancerPlane, apps: dict[str, AppProcess]
) -> None:
    blue, green = apps["blue"], apps["green"]
    plane.apply([listener(("fleet", 1))], [group("fleet", blue, delay_s=5)])
    in_flight: list[tuple[int, dict[str, str]]] = []
    request = threading.Thread(target=lambda: in_flight.extend(answers(plane, 1, "/work?ms=1000")))
    request.start()
    time.sleep(0.5)  # let the request reach blue, the only target (it then runs for a second)

    plane.apply([listener(("fleet", 1))], [group("fleet", green, delay_s=5)])
    assert plane.health("arn:tg/fleet", blue.instance_id).state == "draining"
    assert {body["color"] for _, body in answers(plane, 10)} == {"green"}
    request.join(15)
    assert [(status, body["color"]) for status, body in in_flight] == [(200, "blue")]


def raw_exchange(plane: LoadBalancerPlane, raw: bytes) -> tuple[int, bytes, bool]:
    """``raw`` on a new socket: the status, the body and whether the load balancer then closed."""
    port = plane.listener_port("arn:listener/lab")
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        sock.settimeout(5)
        return response.status, body, sock.recv(1) == b""


def test_desync_modes_in_front_of_a_real_app(plane: LoadBalancerPlane, apps: dict[str, AppProcess]) -> None:
    """ALB user guide, desync mitigation mode, and http-desync-guardian's classification: a GET with a
    body (UndefinedContentLengthSemantics) is Ambiguous: in defensive mode the app answers it and the
    connection then closes; in strictest mode the load balancer answers 400 and the app sees nothing;
    a Transfer-Encoding other than chunked is Severe: 400 in any mode."""
    blue = apps["blue"]
    ambiguous = b"GET /?desync=1 HTTP/1.1\r\nHost: lab\r\nContent-Length: 3\r\n\r\nabc"
    severe = b"POST / HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: gzip\r\n\r\n"
    plane.apply([listener(("fleet", 1))], [group("fleet", blue)])
    wait_for(state_is(plane, "fleet", blue, "healthy"), 10, "healthy")
    status, body, closed = raw_exchange(plane, ambiguous)
    assert (status, json.loads(body)["instance_id"], closed) == (200, blue.instance_id, True)
    assert raw_exchange(plane, severe)[::2] == (400, True)

    logged = lambda: blue.log_path.read_text().count("desync=1")  # noqa: E731
    wait_for(lambda: logged() == 1, 5, "the app logged the ambiguous request")
    plane.apply([listener(("fleet", 1), desync_mode="strictest")], [group("fleet", blue)])
    status, body, closed = raw_exchange(plane, ambiguous)
    assert (status, closed) == (400, True) and b"400 Bad Request" in body
    assert raw_exchange(plane, severe)[::2] == (400, True)
    time.sleep(0.5)  # the app would have logged it by now
    assert logged() == 1
