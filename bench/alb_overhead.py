"""What the sandbox's load balancer costs: latency and throughput with and without it, beside HAProxy.

Starts two release app processes (real gunicorn through ``AppProcess``, as the sandbox runs
instances) and drives a closed-loop load of 8 connections on 127.0.0.1 against, in one run:

1. ``direct``: one app process, no proxy;
2. ``plane``: the sandbox's load balancer (``LoadBalancerPlane``, its own process: health checks
   every 5 s, metrics published every 10 s, weights 90/10 over the two app processes);
3. ``haproxy``: HAProxy with the same weights and health checks, when ``haproxy`` is on PATH.

Each target is measured ``--rounds`` times, interleaved (direct, plane, haproxy, direct, ...), so a
noisy neighbour on the machine hits every target alike; the figures printed are the medians of the
rounds. The load generator is ``wrk`` (Debian's package) when on PATH, else a closed-loop asyncio
client in a process of its own. Goal (issue 11): the plane at least 90 % of HAProxy's requests per
second with a p99 at most 1.2 times HAProxy's, in the same run.

Then it times chunked uploads sent in 1-byte chunks (payloads of 1 MB and 10 MB, six times that on
the wire) through the plane to a target that only reads them: linear scanning shows as ten times
the time for ten times the bytes (``--skip-chunked`` leaves this out).

``--busy-api`` shows why the plane has a process of its own: it runs moto's server in this process
with a client calling it non-stop (as during a ``terraform apply``), and adds ``plane-in-thread``,
the same engine on a thread of this process, as it would run inside the sandbox service.

    .venv/bin/python bench/alb_overhead.py [--seconds 6] [--rounds 5] [--connections 8] [--busy-api]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release
from labkit.sandbox.server.lb import LoadBalancerPlane
from labkit.sandbox.server.lb.engine import Engine, Snapshot
from labkit.sandbox.server.lb.plane import validate
from labkit.sandbox.server.lb.worker import new_event_loop
from labkit.sandbox.server.topology import (
    Forward,
    GroupTarget,
    HealthCheck,
    Listener,
    MetricPoint,
    TargetGroup,
)

HEALTH_INTERVAL_S = 5
PATH = "/"
LISTENER = "arn:listener/bench"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- load generators -------------------------------------------------------------------------


def run_load(url: str, seconds: float, connections: int) -> Result:
    if shutil.which("wrk"):
        return run_wrk(url, seconds, connections)
    return run_python_load(url, seconds, connections)


def run_wrk(url: str, seconds: float, connections: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk printed no {percent}% latency:\n{out}")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Result(float(rps.group(1)), latency("50"), latency("99"), errors)


def run_python_load(url: str, seconds: float, connections: int) -> Result:
    """The asyncio client below, in its own process so that it never shares a GIL with the proxy."""
    out = subprocess.run(
        [sys.executable, __file__, "--load-gen", url, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps, p50, p99, errors = out.split()
    return Result(float(rps), float(p50), float(p99), int(errors))


async def _python_load(url: str, seconds: float, connections: int) -> None:
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    if not match:
        raise SystemExit(f"load generator: only http://127.0.0.1:PORT/... URLs, got {url}")
    port, path = int(match.group(1)), match.group(2)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 2"):
                errors += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(len(latencies) / seconds, p50, p99, errors)


# --- the targets -----------------------------------------------------------------------------


def bench_topology(blue: AppProcess, green: AppProcess) -> tuple[list[Listener], list[TargetGroup]]:
    check = HealthCheck(path="/health/ready", interval_s=HEALTH_INTERVAL_S, timeout_s=2, healthy_threshold=2)
    groups = [
        TargetGroup(
            f"arn:tg/{app.color}",
            app.color,
            check,
            deregistration_delay_s=5,
            targets=(GroupTarget(app.instance_id, app.port),),
            dimension=f"targetgroup/{app.color}/0123456789abcdef",
            load_balancer_dimension="app/bench/0123456789abcdef",
        )
        for app in (blue, green)
    ]
    listener = Listener(
        LISTENER,
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/bench/0123456789abcdef",
        "bench.elb.localhost",
        "HTTP",
        80,
        Forward((("arn:tg/blue", 90), ("arn:tg/green", 10))),
    )
    return [listener], groups


@contextlib.contextmanager
def running_plane(blue: AppProcess, green: AppProcess, sink: list[MetricPoint]) -> Iterator[str]:
    """The sandbox's load balancer over the two apps, once both are healthy: its URL."""
    listeners, groups = bench_topology(blue, green)
    with LoadBalancerPlane(publish=sink.extend, metrics_period_s=10) as plane:
        plane.apply(listeners, groups)
        deadline = time.monotonic() + 30
        while any(plane.health(g.arn, g.targets[0].target_id).state != "healthy" for g in groups):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's targets did not turn healthy within 30 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{plane.listener_port(LISTENER)}{PATH}"


@contextlib.contextmanager
def plane_in_thread(blue: AppProcess, green: AppProcess) -> Iterator[str]:
    """The same engine on an event loop in a thread of this process (the alternative not taken)."""
    listeners, groups = bench_topology(blue, green)
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    snapshots: list[Snapshot] = []

    async def start() -> Engine:
        engine = Engine(publish=lambda points: None, on_change=snapshots.append, metrics_period_s=10)
        await engine.apply(listeners, groups, validate(listeners, groups), {})
        return engine

    engine = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        deadline = time.monotonic() + 30
        while any(snapshots[-1][0][g.arn, g.targets[0].target_id].state != "healthy" for g in groups):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's targets did not turn healthy within 30 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{snapshots[-1][1][LISTENER]}{PATH}"
    finally:
        asyncio.run_coroutine_threadsafe(engine.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


_API_CLIENT = """
import sys, time, boto3
url, seconds = sys.argv[1], float(sys.argv[2])
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    ec2.describe_vpcs()
    elb.describe_load_balancers()
"""


@contextlib.contextmanager
def busy_api(seconds: float) -> Iterator[None]:
    """moto's server in this process, answering a client that calls it without pause."""
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer("127.0.0.1", port, verbose=False)
    server.start()
    client = subprocess.Popen(
        [sys.executable, "-c", _API_CLIENT, f"http://127.0.0.1:{port}", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        client.kill()
        client.wait()
        server.stop()


@contextlib.contextmanager
def running_haproxy(blue: AppProcess, green: AppProcess, workdir: Path) -> Iterator[str]:
    """HAProxy 90/10 over the two apps with the same health checks: its URL."""
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 1024
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    default_backend apps
backend apps
    balance roundrobin
    option httpchk GET /health/ready
    option forwardfor
    server blue 127.0.0.1:{blue.port} weight 90 check inter {HEALTH_INTERVAL_S}s
    server green 127.0.0.1:{green.port} weight 10 check inter {HEALTH_INTERVAL_S}s
"""
    )
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not start listening within 10 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=5, help="measured runs per target (medians printed)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--busy-api", action="store_true", help="measure while moto in this process is busy")
    parser.add_argument("--skip-chunked", action="store_true", help="leave out the chunked upload timing")
    args = parser.parse_args()

    generator = "wrk" if shutil.which("wrk") else "python asyncio client (wrk not on PATH)"
    print(f"load generator: {generator}; {args.connections} connections, {args.seconds:g} s x {args.rounds}")
    print(f"load average at start: {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="alb-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        artifact = build_release("0.0.1", None, workdir / "artifact")
        apps = []
        for color, instance in (("blue", "i-0b1e"), ("green", "i-06e3")):
            release = unpack_release(artifact, workdir / instance)
            print(f"starting the {color} app (gunicorn) ...", flush=True)
            log_path = workdir / f"{instance}.log"
            app = AppProcess.start(release, color=color, instance_id=instance, log_path=log_path)
            stack.callback(app.stop, timeout=10)
            apps.append(app)
        blue, green = apps
        sink: list[MetricPoint] = []
        urls = {"direct": f"{blue.url}{PATH}", "plane": stack.enter_context(running_plane(blue, green, sink))}
        if args.busy_api:
            urls["plane-in-thread"] = stack.enter_context(plane_in_thread(blue, green))
        if shutil.which("haproxy"):
            urls["haproxy"] = stack.enter_context(running_haproxy(blue, green, workdir))
        else:
            print("haproxy not on PATH: skipping it (apt-get install haproxy)")
        if args.busy_api:
            busy_s = (len(urls) * (args.rounds * args.seconds + 2)) + 60
            stack.enter_context(busy_api(busy_s))
            print("moto in this process is answering API calls without pause from now on")

        for url in urls.values():
            run_load(url, 2, args.connections)  # warm up: connections, caches, pools
        results: dict[str, list[Result]] = {name: [] for name in urls}
        for round_number in range(1, args.rounds + 1):
            for name, url in urls.items():
                result = run_load(url, args.seconds, args.connections)
                results[name].append(result)
                print(
                    f"  round {round_number} {name:15} {result.rps:8.0f} rps  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                    flush=True,
                )
        report(results, sink)
    if not args.skip_chunked:
        chunked_uploads()


def _read_upload(server: socket.socket, body_bytes: int) -> None:
    """Answer health checks, then read one upload's head and ``body_bytes`` more and answer 200."""
    while True:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"POST"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                continue
            remaining = body_bytes - (len(data) - data.index(b"\r\n\r\n") - 4)
            while remaining > 0:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                remaining -= len(chunk)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return


def chunked_uploads() -> None:
    """Time 1 MB and 10 MB payloads in 1-byte chunks through the plane to a reading-only target."""
    print("\nchunked uploads in 1-byte chunks through the plane (a reading-only target):")
    sink: list[MetricPoint] = []
    timings = {}
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = int(server.getsockname()[1])
        check = HealthCheck(path="/", interval_s=300, timeout_s=2, healthy_threshold=2)
        group = TargetGroup(
            "arn:tg/upload", "upload", check, 0, (GroupTarget("i-upload", port),), "targetgroup/upload/0f", ""
        )
        listener = Listener(
            "arn:listener/upload",
            "arn:lb/app/upload/0f",
            "upload.elb.localhost",
            "HTTP",
            80,
            Forward((("arn:tg/upload", 1),)),
        )
        with LoadBalancerPlane(publish=sink.extend) as plane:
            plane.apply([listener], [group])
            plane_port = plane.listener_port("arn:listener/upload")
            for megabytes in (1, 10):
                payload = megabytes * 1_000_000
                body = b"1\r\nx\r\n" * payload + b"0\r\n\r\n"
                reader = threading.Thread(target=_read_upload, args=(server, len(body)), daemon=True)
                reader.start()
                head = b"POST /upload HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n"
                started = time.perf_counter()
                with socket.create_connection(("127.0.0.1", plane_port or 0), timeout=300) as sock:
                    sock.sendall(head + body)
                    answer = sock.recv(4096)
                took = time.perf_counter() - started
                reader.join(60)
                timings[megabytes] = took
                status = answer.split(b" ", 2)[1].decode() if answer else "none"
                print(
                    f"  {megabytes:2d} MB payload ({len(body) / 1e6:.0f} MB on the wire): {took:6.2f} s, "
                    f"status {status}",
                    flush=True,
                )
    print(f"  10 MB took {timings[10] / timings[1]:.1f} x the time of 1 MB (linear: about 10 x)")


def report(results: dict[str, list[Result]], sink: list[MetricPoint]) -> None:
    print("\nmedians:")
    medians = {}
    for name, runs in results.items():
        medians[name] = Result(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
        )
        m = medians[name]
        print(
            f"  {name:15} {m.rps:8.0f} rps  p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  errors {m.errors}"
        )
    counted = sum(p.value for p in sink if p.name == "RequestCount" and len(p.dimensions) == 2)
    print(f"  the plane published RequestCount totalling {counted:.0f} over {len(sink)} data points")
    if "haproxy" in medians:
        plane, haproxy = medians["plane"], medians["haproxy"]
        rps_share = plane.rps / haproxy.rps
        p99_ratio = plane.p99_ms / haproxy.p99_ms
        rps_ok = "met" if rps_share >= 0.90 else "NOT met"
        p99_ok = "met" if p99_ratio <= 1.2 else "NOT met"
        print(f"goal: plane rps >= 90 % of haproxy's: {rps_share:.0%} ({rps_ok})")
        print(f"goal: plane p99 <= 1.2 x haproxy's:   {p99_ratio:.2f} x ({p99_ok})")
    if "plane-in-thread" in medians:
        own, shared = medians["plane"], medians["plane-in-thread"]
        print(
            f"busy API: the plane in its own process served {own.rps / shared.rps:.2f} x the requests per "
            f"second of the plane in a thread beside moto; p99 {own.p99_ms:.1f} ms against "
            f"{shared.p99_ms:.1f} ms"
        )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--load-gen":
        asyncio.run(_python_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
