"""How fast the load probe sends: achieved rate, latency and lateness against a local release app.

Starts one release app process (real gunicorn through ``AppProcess``, as the sandbox runs an
instance) and runs :class:`labkit.deploy.probe.Probe` at each ``--rates`` value for ``--seconds``,
printing per rate: requests, achieved requests per second, failures, latency percentiles, how late
requests left (``lag``: the probe's own scheduling delay) and the probe's CPU use. Goal (issue 5):
at least 100 requests per second, with no failures and a small lag, on this 2-core machine.

    .venv/bin/python bench/probe_rate.py [--rates 100 200 400] [--seconds 10] [--url URL]

``--url`` measures against something already running on loopback (the sandbox's load balancer)
instead of starting an app.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labkit.deploy.probe import Probe, summarize
from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release


def measure(url: str, rate: float, seconds: float) -> None:
    cpu_before, wall_before = time.process_time(), time.monotonic()
    probe = Probe(url, rate=rate, duration=seconds).start()
    while not probe.wait(timeout=5):
        sent, failed = probe.counts()
        print(f"    ... {sent} requests, {failed} failed", flush=True)
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    frame = probe.results()
    row = summarize(frame).loc["all"]
    lag = frame["lag_ms"]
    print(
        f"  rate {rate:6.0f}/s  sent {int(row['requests']):6d}  achieved {row['rate_rps']:7.1f}/s  "
        f"failed {int(row['failed']):4d}  latency p50 {row['p50_ms']:6.1f} p95 {row['p95_ms']:6.1f} "
        f"p99 {row['p99_ms']:6.1f} ms  lag p50 {lag.quantile(0.5):5.1f} p95 {lag.quantile(0.95):6.1f} ms  "
        f"probe CPU {cpu / wall:4.0%} of one core ({probe.workers} connections)",
        flush=True,
    )
    if row["failed"]:
        print(f"    errors: {frame['error'].value_counts().to_dict()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 200.0, 400.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--url", help="a loopback URL to probe instead of a freshly started app")
    args = parser.parse_args()

    if args.url:
        print(f"probing {args.url}", flush=True)
        for rate in args.rates:
            measure(args.url, rate, args.seconds)
        return

    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        root = Path(tmp)
        print("building and starting a release app (gunicorn, 1 worker x 8 threads) ...", flush=True)
        release = unpack_release(build_release("1.0.0", None, root / "artifact"), root / "release")
        app = AppProcess.start(
            release, color="blue", instance_id="i-bench", log_path=root / "app.log", threads=8, drain_s=0.2
        )
        try:
            print(f"probing {app.url}/ for {args.seconds:g} s per rate", flush=True)
            for rate in args.rates:
                measure(app.url + "/", rate, args.seconds)
        finally:
            app.stop()


if __name__ == "__main__":
    main()
