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
from labkit.lab.database import (
    RELEASES,
    DeployRun,
    build_staging_with_database,
    deploy_under_probes,
    migration_phases,
)


def report(controller: Controller, run: DeployRun) -> bool:
    """Print what ``run`` did; True when its goals hold."""
    phases = ", ".join(
        f"{r.phase} {r.seconds:.1f} s ({r.what})" for r in migration_phases(controller, run).itertuples()
    )
    print(
        f"   {run.record.status} in {run.wall_s:.1f} s: {run.record.reason}\n"
        f"   reads: {len(run.reads)} sent, {run.failed_reads} failed\n"
        f"   {run.check.summary()}\n"
        f"   migrations: {phases or 'none'}\n"
        f"   database at {run.revision}",
        flush=True,
    )
    if run.version.endswith("onestep"):
        return run.record.status == "rolled_back" and not run.check.lost and run.revision == "0001"
    ok = run.record.status == "succeeded" and run.failed_reads == 0
    return ok and run.check.failed == 0 and run.check.ok


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
        started = time.monotonic()
        controller = build_staging_with_database(
            sandbox.target(), say=lambda line: print("  " + line, flush=True)
        )
        print(
            f"stack ready in {time.monotonic() - started:.0f} s: {controller.layout().describe()}", flush=True
        )
        for number, version in enumerate(("1.1.0-onestep", "1.1.0", "1.2.0"), start=1):
            schema, faults = RELEASES[version]
            print(f"\n{number}. deploy {version} (schema {schema}{', ' if faults else ''}"
                  f"{', '.join(f'{k}={v}' for k, v in faults.items())}), reads {args.rate:g}/s, "
                  f"writes {args.writes:g}/s", flush=True)  # fmt: skip
            run = deploy_under_probes(controller, version, rate=args.rate, writes=args.writes)
            results[version] = report(controller, run)
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
