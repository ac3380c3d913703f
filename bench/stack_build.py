"""Seconds to build the stack from zero, to plan it with no changes, and to take one weight step.

With ``--engine sandbox`` (the default) it starts a private labkit sandbox in a temporary folder
(moto, the load balancer, real app processes), applies ``global``, uploads release 1.0.0, applies
``staging`` (blue x2 and green x1 on 1.0.0, all traffic on blue), then times a plan that must show
no changes and the step ``green_weight`` 0 -> 10 (one listener update), and finally destroys
staging and tears global down. ``--engine moto`` runs the same on an in-process moto server with
labkit's mends and no data plane (every target reports healthy), which isolates Terraform's and
the API's share of the time from the apps' start-up.

    .venv/bin/python bench/stack_build.py [--engine sandbox|moto] [--keep]

Expect about 3 minutes for the build: the AWS provider sleeps 60 s while creating the ALB and
waits 55 s for each S3 lifecycle configuration to settle, on AWS as here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.target import Target

FIRST = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 2, "green_capacity": 1}


@contextmanager
def sandbox_engine(work: Path) -> Iterator[Target]:
    from labkit import sandbox

    os.environ["LABKIT_SANDBOX_HOME"] = str(work / "sandbox")
    try:
        yield sandbox.target()
    finally:
        sandbox.down()


@contextmanager
def moto_engine(work: Path) -> Iterator[Target]:
    from moto.server import ThreadedMotoServer

    from labkit.sandbox.server.mends import apply_mends
    from labkit.sandbox.server.topology import TargetHealthReport
    from labkit.target import sandbox as sandbox_target

    apply_mends(lambda group, target: TargetHealthReport("healthy"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield sandbox_target(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def timed(label: str, action: Callable[[], object]) -> float:
    print(f"... {label}", flush=True)
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    print(f"    {label}: {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sandbox", "moto"), default="sandbox")
    parser.add_argument("--keep", action="store_true", help="leave the work folder (printed) behind")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-stack-"))
    os.environ["LABKIT_HOME"] = str(work / "home")
    os.environ.setdefault("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    from labkit.infra.stack import Stack
    from labkit.release.build import build_release, upload_release

    engine = sandbox_engine if args.engine == "sandbox" else moto_engine
    try:
        with engine(work) as target:
            glob = Stack("global", target, reporter=None)
            staging = Stack("staging", target, reporter=None)

            def upload() -> None:
                bucket = glob.names.artifact_bucket
                upload_release(target, bucket, build_release("1.0.0", None, work / "1.0.0"), "1.0.0")

            t_global = timed("apply global (bootstrap, then state migrated into its bucket)", glob.apply)
            t_upload = timed("build and upload release 1.0.0", upload)
            t_staging = timed("apply staging", lambda: staging.apply(FIRST))

            def no_change_plan() -> None:
                plan = staging.plan()
                assert not plan.changes, f"expected no changes: {plan.summary()}"

            def weight_step() -> None:
                result = staging.apply({"green_weight": 10})
                assert (result.added, result.changed, result.removed) == (0, 1, 0), result

            t_plan = timed("plan with no changes", no_change_plan)
            t_step = timed("weight step green_weight 0 -> 10", weight_step)
            t_destroy = timed("destroy staging", staging.destroy)
            t_teardown = timed("tear down global", lambda: glob.teardown(confirm="global"))

        print(f"\nstack_build ({args.engine}):")
        build = t_global + t_upload + t_staging
        print(
            f"  build from zero       {build:6.1f} s  "
            f"(global {t_global:.1f}, release {t_upload:.1f}, staging {t_staging:.1f})"
        )
        print(f"  no-change plan        {t_plan:6.1f} s")
        print(f"  one weight step       {t_step:6.1f} s  (plan and apply of the listener)")
        print(f"  destroy + teardown    {t_destroy + t_teardown:6.1f} s")
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
