"""Deploys on a database: a breaking one-step migration caught and rolled back, then the same rename
as expand and contract over two releases with no failed request and no lost write (issue 15).

Starts a private sandbox (in a temporary folder, stopped at the end) and applies global and staging
with real Terraform and ``enable_database=true``: RDS PostgreSQL 16 served by the sandbox as a real
PostgreSQL, blue serving 1.0.0 (schema 0001) on one instance. Release 1.0.0's migrations create the
schema (what `labkit db migrate staging` runs). Then three deploys by the default canary, each
under the read probe (``GET /`` at ``--rate``) and the write probe (``POST /orders`` at
``--writes``, every acknowledged write read back afterwards); the write probe is the deploy's
probe, the evidence its gate judges:

1. ``1.1.0-onestep``: schema 0002 by the fault ``migration=one_step``, ``orders.item`` renamed in one
   ALTER. Blue's 1.0.0 code, still serving, fails every write; the gate sees it and rolls back,
   the schema going back to 0001 first (goal: rolled back, no lost write);
2. ``1.1.0``: schema 0002, expand (``product`` beside ``item``, kept in step by a trigger)
   (goal: 0 failed requests, 0 failed and 0 lost writes);
3. ``1.2.0``: schema 0003; the deploy expands to 0002 (nothing to do), shifts, parks blue, then
   contracts (drops ``item``) (goal: the same).

Each deploy prints its status, the reads and writes failed, the writes lost, the migration phases
with their times and the database's revision after it.

    .venv/bin/python bench/db_deploy.py [--rate 100] [--writes 20] [--keep]

Setting up takes about 4 minutes (the ALB 60 s and the RDS instance 80 s of the AWS provider's own
waits); each deploy about 1 more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from labkit.deploy import Controller
from labkit.deploy.migrations import EnvironmentDatabase, environment_database, run_migrations
from labkit.deploy.probe import Probe
from labkit.deploy.strategy import canary
from labkit.deploy.writeprobe import WriteProbe
from labkit.infra.stack import Stack
from labkit.release.build import build_release, upload_release

#: version -> (schema, faults)
RELEASES: dict[str, tuple[str, dict[str, str]]] = {
    "1.0.0": ("0001", {}),
    "1.1.0-onestep": ("0002", {"migration": "one_step"}),
    "1.1.0": ("0002", {}),
    "1.2.0": ("0003", {}),
}


def setup(work: Path) -> Controller:
    from labkit import sandbox
    from labkit.deploy import wait_healthy

    target = sandbox.target()
    started = time.monotonic()
    Stack("global", target, reporter=None).apply()
    bucket = Stack("global", target, reporter=None).names.artifact_bucket
    for version, (schema, faults) in RELEASES.items():
        artifact = build_release(version, faults, work / version, schema=schema)
        upload_release(target, bucket, artifact, version)
    controller = Controller("staging", target, say=lambda line: print("  " + line, flush=True))
    controller.stack.apply(
        {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 1, "green_capacity": 0,
         "enable_database": True}
    )  # fmt: skip
    print(run_migrations(target, bucket, "1.0.0", "upgrade", database(controller)).strip(), flush=True)
    outputs = controller.stack.outputs()
    ok, report, _ = wait_healthy(
        target,
        asg_name=outputs["blue_asg_name"],
        target_group_arn=outputs["blue_target_group_arn"],
        wanted=1,
        timeout_s=120,
        say=print,
    )
    if not ok:
        raise SystemExit(f"blue never turned healthy: {report.describe()}")
    print(f"stack ready in {time.monotonic() - started:.0f} s: {controller.layout().describe()}", flush=True)
    return controller


def database(controller: Controller) -> EnvironmentDatabase:
    return environment_database(controller.stack)


def deploy(controller: Controller, version: str, rate: float, writes: float) -> bool:
    """Deploy ``version`` under both probes; print what happened; True when its goals hold."""
    url = controller.alb_url()
    reads, written = Probe(url, rate=rate), WriteProbe(url, rate=writes)
    reads.start()
    written.start()
    started = time.monotonic()
    try:
        record = controller.deploy(version, strategy=canary(), probe=written)
        wall = time.monotonic() - started
        time.sleep(2)  # answers due after the last move
    finally:
        reads.stop()
        written.stop()
    check = written.verify()
    read_frame = reads.results()
    failed_reads = int((~read_frame["ok"]).sum())
    bucket = controller.stack.names.artifact_bucket
    revision = run_migrations(controller.target, bucket, version, "current", database(controller)).strip()
    phases = ", ".join(
        f"{e.phase} {e.duration_s:.1f} s ({e.detail})"
        for e in controller.ledger.events(record.id)
        if "migrate" in e.phase and e.duration_s is not None
    )
    print(
        f"   {record.status} in {wall:.1f} s: {record.reason}\n"
        f"   reads: {len(read_frame)} sent, {failed_reads} failed\n"
        f"   {check.summary()}\n"
        f"   migrations: {phases or 'none'}\n"
        f"   database at {revision}",
        flush=True,
    )
    if version.endswith("onestep"):
        return record.status == "rolled_back" and not check.lost and revision == "0001"
    return record.status == "succeeded" and failed_reads == 0 and check.failed == 0 and check.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="read probe requests per second")
    parser.add_argument("--writes", type=float, default=20.0, help="write probe writes per second")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox folder (printed) behind")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-db-deploy-"))
    os.environ["LABKIT_HOME"] = str(work / "home")
    os.environ["LABKIT_SANDBOX_HOME"] = str(work / "sandbox")
    os.environ.setdefault("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    from labkit import sandbox

    results: dict[str, bool] = {}
    try:
        controller = setup(work)
        for number, version in enumerate(("1.1.0-onestep", "1.1.0", "1.2.0"), start=1):
            schema, faults = RELEASES[version]
            print(f"\n{number}. deploy {version} (schema {schema}{', ' if faults else ''}"
                  f"{', '.join(f'{k}={v}' for k, v in faults.items())}), reads {args.rate:g}/s, "
                  f"writes {args.writes:g}/s", flush=True)  # fmt: skip
            results[version] = deploy(controller, version, args.rate, args.writes)
    finally:
        sandbox.down()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\ngoals: " + ", ".join(f"{v} {'met' if ok else 'MISSED'}" for v, ok in results.items()))
    if not all(results.values()) or len(results) < len(RELEASES) - 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
