"""What the sandbox's load balancer costs: latency and throughput with and without it, beside HAProxy.

Runs with two kinds of backends (``--backends``, both by default), two of each (blue and green):

- ``app``: release app processes (real gunicorn through ``AppProcess``, as the sandbox runs
  instances). They are the bottleneck: what they cost hides much of what the proxy costs.
- ``static``: a static responder that is not the bottleneck, so the figures are the proxy's own.
  It is HAProxy answering a fixed ``200 ok`` itself (``http-request return``, keep-alive, one
  thread, one process with a port per color): C code doing a small part of a proxy's work per
  request, so it has latency and capacity to spare, and ``direct`` shows both (the bench says so
  when the responder alone is not well above the proxies). It needs ``haproxy`` on PATH, as the
  comparison does; a responder in Python would share the plane's costs (interpreter, callbacks)
  and take more of the two cores the proxies contend for.

For each kind, a closed-loop load of ``--connections`` connections on 127.0.0.1 (saturation) goes
against, in one run:

1. ``direct``: the blue backend, no proxy;
2. ``plane``: the sandbox's load balancer (``LoadBalancerPlane``, its own process: health checks
   every 5 s, metrics published every 10 s, weights 90/10 over blue and green);
3. ``haproxy``: HAProxy with the same weights and health checks, when ``haproxy`` is on PATH.

Each target is measured ``--rounds`` times, interleaved (direct, plane, haproxy, direct, ...), so a
noisy neighbour on the machine hits every target alike; the figures printed are the medians of the
rounds. The load generator is ``wrk`` (Debian's package) when on PATH, else a closed-loop asyncio
client in a process of its own. Goal (issue 11): the plane at least 90 % of HAProxy's requests per
second with a p99 at most 1.2 times HAProxy's, in the same run (issue 17: with static backends too).

With static backends it then sends at fixed rates (``--rates``, 100, 200 and 400 requests per
second as the deploy probe does), open loop: request *i* leaves at ``start + i / rate`` on one of
``--connections`` kept-alive connections, from an asyncio client in a process of its own, whatever
the earlier ones are doing. Latency runs from writing a request to reading its last byte; a request
that found every connection busy is counted as ``queued`` (its wait is not in its latency, so the
figures say how many). The added latency is the plane's percentile minus direct's, per rate, in
``--rate-rounds`` interleaved rounds of ``--rate-seconds`` (medians printed). Goal (issue 17):
the plane adds under 0.5 ms at p50 and under 2 ms at p99.

Then it times chunked uploads sent in 1-byte chunks (payloads of 1 MB and 10 MB, six times that on
the wire) through the plane to a target that only reads them: linear scanning shows as ten times
the time for ten times the bytes (``--skip-chunked`` leaves this out).

``--busy-api`` shows why the plane has a process of its own: it runs moto's server in this process
with a client calling it non-stop (as during a ``terraform apply``), and adds ``plane-in-thread``,
the same engine on a thread of this process, as it would run inside the sandbox service.

    .venv/bin/python bench/alb_overhead.py [--backends app static] [--seconds 6] [--rounds 5]
        [--connections 8] [--rates 100 200 400] [--rate-seconds 6] [--rate-rounds 5] [--busy-api]
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


@dataclass
class RateResult:
    """One open-loop run at a fixed rate."""

    achieved_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    queued: int


@dataclass(frozen=True)
class Backend:
    """What the bench needs of a blue or green backend (an app process, or a static responder's port)."""

    color: str
    instance_id: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
    rps, p50, p99, errors = _client_process("--load-gen", url, seconds, connections)
    return Result(float(rps), float(p50), float(p99), int(errors))


def run_fixed_rate(url: str, rate: float, seconds: float, connections: int) -> RateResult:
    """The open-loop client below at ``rate`` requests per second, in its own process."""
    achieved, p50, p99, errors, queued = _client_process("--fixed-rate", url, seconds, connections, rate)
    return RateResult(float(achieved), float(p50), float(p99), int(errors), int(queued))


def _client_process(mode: str, url: str, seconds: float, connections: int, *extra: float) -> list[str]:
    out = subprocess.run(
        [sys.executable, __file__, mode, url, str(seconds), str(connections), *map(str, extra)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    return out.split()


def _percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted seconds, in milliseconds."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def _request_for(url: str) -> tuple[int, bytes]:
    """The port and the GET request for a loopback URL."""
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    if not match:
        raise SystemExit(f"load generator: only http://127.0.0.1:PORT/... URLs, got {url}")
    port, path = int(match.group(1)), match.group(2)
    return port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """Send one request on a kept-alive connection and read its whole response: whether it was a 2xx."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 2")


async def _python_load(url: str, seconds: float, connections: int) -> None:
    port, request = _request_for(url)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            errors += not ok
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    latencies.sort()
    print(len(latencies) / seconds, _percentile(latencies, 0.5), _percentile(latencies, 0.99), errors)


async def _fixed_rate(url: str, seconds: float, connections: int, rate: float) -> None:
    """Open loop: request *i* leaves at ``start + i / rate`` on a free connection (queued if none)."""
    port, request = _request_for(url)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _exchange(reader, writer, request)  # warm up: the proxy's connection to a target too
        idle.put_nowait((reader, writer))
    latencies: list[float] = []
    errors = queued = 0

    async def one() -> None:
        nonlocal errors, queued
        if idle.empty():
            queued += 1
        reader, writer = await idle.get()
        started = time.perf_counter()
        ok = await _exchange(reader, writer, request)
        latencies.append(time.perf_counter() - started)
        errors += not ok
        idle.put_nowait((reader, writer))

    loop = asyncio.get_running_loop()
    tasks = []
    start = loop.time()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one()))
    await asyncio.gather(*tasks)
    took = loop.time() - start
    latencies.sort()
    print(len(latencies) / took, _percentile(latencies, 0.5), _percentile(latencies, 0.99), errors, queued)


# --- the targets -----------------------------------------------------------------------------


def bench_topology(blue: Backend, green: Backend) -> tuple[list[Listener], list[TargetGroup]]:
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
def running_plane(blue: Backend, green: Backend, sink: list[MetricPoint]) -> Iterator[str]:
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
def plane_in_thread(blue: Backend, green: Backend) -> Iterator[str]:
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


_HAPROXY_COMMON = """global
    maxconn 1024
{global_extra}defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
"""


@contextlib.contextmanager
def _haproxy(config: str, ports: list[int], workdir: Path, name: str) -> Iterator[None]:
    """HAProxy running ``config`` until the block ends, once it listens on every one of ``ports``."""
    path = workdir / f"{name}.cfg"
    path.write_text(config)
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"haproxy ({name}) did not start listening within 10 s") from None
                    time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def running_haproxy(blue: Backend, green: Backend, workdir: Path) -> Iterator[str]:
    """HAProxy 90/10 over the two backends with the same health checks: its URL."""
    port = free_port()
    config = _HAPROXY_COMMON.format(global_extra="") + (
        f"""frontend bench
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
    with _haproxy(config, [port], workdir, "haproxy"):
        yield f"http://127.0.0.1:{port}{PATH}"


@contextlib.contextmanager
def static_backends(workdir: Path) -> Iterator[tuple[Backend, Backend]]:
    """Blue and green as ports of one HAProxy process, one thread, that answers ``200 ok`` itself."""
    blue, green = Backend("blue", "i-0b1e", free_port()), Backend("green", "i-06e3", free_port())
    config = _HAPROXY_COMMON.format(global_extra="    nbthread 1\n") + "".join(
        f"""frontend {backend.color}
    bind 127.0.0.1:{backend.port}
    http-request return status 200 content-type text/plain string ok
"""
        for backend in (blue, green)
    )
    with _haproxy(config, [blue.port, green.port], workdir, "static"):
        yield blue, green


@contextlib.contextmanager
def app_backends(workdir: Path) -> Iterator[tuple[Backend, Backend]]:
    """Blue and green as release app processes (gunicorn), as the sandbox runs instances."""
    artifact = build_release("0.0.1", None, workdir / "artifact")
    backends = []
    with contextlib.ExitStack() as stack:
        for color, instance in (("blue", "i-0b1e"), ("green", "i-06e3")):
            release = unpack_release(artifact, workdir / instance)
            print(f"starting the {color} app (gunicorn) ...", flush=True)
            log_path = workdir / f"{instance}.log"
            app = AppProcess.start(release, color=color, instance_id=instance, log_path=log_path)
            stack.callback(app.stop, timeout=10)
            backends.append(Backend(color, instance, app.port))
        yield backends[0], backends[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends", nargs="+", choices=("app", "static"), default=["app", "static"], help="kinds, in order"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=5, help="measured runs per target (medians printed)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 200.0, 400.0], help="req/s")
    parser.add_argument("--rate-seconds", type=float, default=6.0, help="length of each fixed-rate run")
    parser.add_argument("--rate-rounds", type=int, default=5, help="fixed-rate runs per target and rate")
    parser.add_argument("--busy-api", action="store_true", help="measure while moto in this process is busy")
    parser.add_argument("--skip-chunked", action="store_true", help="leave out the chunked upload timing")
    args = parser.parse_args()

    generator = "wrk" if shutil.which("wrk") else "python asyncio client (wrk not on PATH)"
    print(f"load generator: {generator}; {args.connections} connections, {args.seconds:g} s x {args.rounds}")
    print(f"load average at start: {_load_average()}")
    with tempfile.TemporaryDirectory(prefix="alb-bench-") as tmp:
        for kind in args.backends:
            if kind == "static" and not shutil.which("haproxy"):
                print("\nstatic backends: skipped, they are HAProxy (apt-get install haproxy)")
                continue
            print(f"\n=== {kind} backends ===", flush=True)
            workdir = Path(tmp) / kind
            workdir.mkdir()
            backends = app_backends(workdir) if kind == "app" else static_backends(workdir)
            with backends as (blue, green):
                measure(blue, green, workdir, args, fixed_rates=kind == "static")
    print(f"load average at the end: {_load_average()}")
    if not args.skip_chunked:
        chunked_uploads()


def _load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def measure(
    blue: Backend, green: Backend, workdir: Path, args: argparse.Namespace, *, fixed_rates: bool
) -> None:
    """Saturation rounds against direct, the plane and HAProxy over these backends; then fixed rates."""
    with contextlib.ExitStack() as stack:
        sink: list[MetricPoint] = []
        urls = {"direct": f"{blue.url}{PATH}", "plane": stack.enter_context(running_plane(blue, green, sink))}
        if args.busy_api:
            urls["plane-in-thread"] = stack.enter_context(plane_in_thread(blue, green))
        if shutil.which("haproxy"):
            urls["haproxy"] = stack.enter_context(running_haproxy(blue, green, workdir))
        else:
            print("haproxy not on PATH: skipping it (apt-get install haproxy)")
        if args.busy_api:
            busy_s = len(urls) * (args.rounds * args.seconds + 2) + 60
            if fixed_rates:
                busy_s += len(urls) * len(args.rates) * args.rate_rounds * (args.rate_seconds + 2)
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
        if fixed_rates:
            by_rate: dict[float, dict[str, list[RateResult]]] = {}
            for rate in args.rates:
                by_rate[rate] = {name: [] for name in urls}
                for round_number in range(1, args.rate_rounds + 1):
                    for name, url in urls.items():
                        run = run_fixed_rate(url, rate, args.rate_seconds, args.connections)
                        by_rate[rate][name].append(run)
                        print(
                            f"  {rate:4.0f}/s round {round_number} {name:15} p50 {run.p50_ms:6.3f} ms  "
                            f"p99 {run.p99_ms:6.3f} ms  achieved {run.achieved_rps:6.1f}/s  "
                            f"errors {run.errors}  queued {run.queued}",
                            flush=True,
                        )
            report_rates(by_rate)


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
    rounds = len(next(iter(results.values())))
    print(f"\nsaturation, medians of {rounds} rounds:")
    print(f"  {'target':15} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    medians = {}
    for name, runs in results.items():
        medians[name] = Result(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
        )
        m = medians[name]
        print(f"  {name:15} {m.rps:8.0f} {m.p50_ms:8.2f} {m.p99_ms:8.2f} {m.errors:7d}")
    counted = sum(p.value for p in sink if p.name == "RequestCount" and len(p.dimensions) == 2)
    print(f"  the plane published RequestCount totalling {counted:.0f} over {len(sink)} data points")
    fastest = max(m.rps for name, m in medians.items() if name != "direct")
    if medians["direct"].rps < 1.5 * fastest:
        print(
            f"  note: the backend alone serves {medians['direct'].rps / fastest:.1f} x the fastest proxy's "
            "req/s: it, not the proxy, may set the pace"
        )
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


#: Issue 17: what the plane may add to direct's latency at probe-like rates, in milliseconds.
ADDED_P50_GOAL_MS = 0.5
ADDED_P99_GOAL_MS = 2.0


def report_rates(by_rate: dict[float, dict[str, list[RateResult]]]) -> None:
    """Per rate: each target's median p50/p99 over the rounds, and what each proxy adds to direct's."""
    proxies = [name for name in next(iter(by_rate.values())) if name != "direct"]
    print("\nfixed rates (open loop), medians of the rounds; added = proxy's percentile minus direct's, ms:")
    columns = "".join(f" | {name:>15} p50   p99  +p50  +p99" for name in proxies)
    print(f"  {'req/s':>5} | {'direct':>6} p50   p99{columns} | queued")
    verdicts = []
    for rate, results in by_rate.items():
        medians = {
            name: (statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs))
            for name, runs in results.items()
        }
        direct_p50, direct_p99 = medians["direct"]
        row = f"  {rate:5.0f} | {direct_p50:10.3f} {direct_p99:5.2f}"
        for name in proxies:
            p50, p99 = medians[name]
            row += f" | {p50:19.3f} {p99:5.2f} {p50 - direct_p50:5.2f} {p99 - direct_p99:5.2f}"
        queued = sum(r.queued for runs in results.values() for r in runs)
        errors = sum(r.errors for runs in results.values() for r in runs)
        print(f"{row} | {queued}" + (f"  ({errors} errors)" if errors else ""))
        plane_p50, plane_p99 = medians["plane"]
        verdicts.append((rate, plane_p50 - direct_p50, plane_p99 - direct_p99))
    for rate, added_p50, added_p99 in verdicts:
        ok = added_p50 < ADDED_P50_GOAL_MS and added_p99 < ADDED_P99_GOAL_MS
        print(
            f"goal at {rate:.0f}/s: the plane adds p50 < {ADDED_P50_GOAL_MS} ms and p99 < "
            f"{ADDED_P99_GOAL_MS} ms: {added_p50:+.3f} / {added_p99:+.3f} ms ({'met' if ok else 'NOT met'})"
        )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--load-gen":
        asyncio.run(_python_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    elif len(sys.argv) == 6 and sys.argv[1] == "--fixed-rate":
        # uvloop when installed, as the plane runs: less of the client's own time in the figures.
        new_event_loop().run_until_complete(
            _fixed_rate(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        )
    else:
        main()
