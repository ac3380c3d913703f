"""What a SIGKILL of the sandbox service loses: the bound, measured.

Starts a private sandbox in a temporary folder, then:

1. Terraform: applies a small root module (state in the sandbox's S3, S3-native locking), SIGKILLs
   the service the moment ``terraform apply`` returns, starts it again and plans: a no-change
   plan means the apply's state (and its released lock) were on disk before Terraform exited,
   because the service saves at once when Terraform releases its state lock. Repeated
   ``--rounds`` times, each apply changing a tag.
2. Any other write (here: creating an S3 bucket with boto3): SIGKILLs the service a given delay
   after the write and checks whether the bucket came back. Such writes are saved once the API
   has been quiet for ``SAVE_QUIET_S`` (the service looks every ``LOOP_INTERVAL_S``), or
   ``SAVE_MAX_DELAY_S`` after the first unsaved one however busy it is; the bound is that plus
   one save's duration (from the service's log).

    .venv/bin/python bench/sandbox_durability.py [--rounds 3] [--keep]

Takes about two minutes (each restart loads moto and the state: a few seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tests" / "integration" / "tf_small"
BUCKET = "durability-tfstate"
DELAYS_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def kill_service(home: Path) -> None:
    from labkit import sandbox

    pid = int(json.loads((home / "service.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.02)
    sandbox.down()  # clears service.json and the dead service's apps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Terraform applies, each followed by a SIGKILL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-durability-"))
    home = work / "sandbox"
    os.environ["LABKIT_SANDBOX_HOME"] = str(home)
    os.environ["LABKIT_HOME"] = str(work / "home")
    from labkit import sandbox
    from labkit.infra.terraform import Terraform
    from labkit.sandbox.server.service import LOOP_INTERVAL_S, SAVE_MAX_DELAY_S, SAVE_QUIET_S
    from labkit.target import sandbox as sandbox_target

    try:
        target = sandbox_target(sandbox.up(report=lambda _line: None))
        target.client("s3").create_bucket(Bucket=BUCKET)
        module = work / "tf"
        shutil.copytree(ROOT, module)
        tf = Terraform(module, target=target, data_dir=module / ".tfdata", reporter=lambda _line: None)
        tf.init(backend_config={
            "bucket": BUCKET, "key": "durability/terraform.tfstate", "region": target.region,
            "use_lockfile": "true", "use_path_style": "true", "skip_credentials_validation": "true",
            "skip_requesting_account_id": "true", "skip_metadata_api_check": "true",
        })  # fmt: skip

        print("1. SIGKILL the moment `terraform apply` returns, then up and plan")
        kept = 0
        for round_ in range(1, args.rounds + 1):
            variables = {"name": "durability", "tags": {"Round": str(round_)}}
            started = time.monotonic()
            tf.apply(variables=variables)
            applied = time.monotonic() - started
            kill_service(home)
            started = time.monotonic()
            target = sandbox_target(sandbox.up(report=lambda _line: None))
            restart = time.monotonic() - started
            tf = Terraform(module, target=target, data_dir=module / ".tfdata", reporter=lambda _line: None)
            plan = tf.plan(variables=variables)
            kept += plan.exit_code == 0
            locks = sandbox.status().restored_locks
            print(
                f"   round {round_}: apply {applied:5.1f} s, restart {restart:4.1f} s, plan after restart: "
                f"{'no changes' if plan.exit_code == 0 else f'{len(plan.changes)} change(s): LOST'}"
                f"{', restored locks: ' + str(len(locks)) if locks else ', no lock restored'}"
            )
        print(f"   {kept}/{args.rounds} applies survived a SIGKILL right after them")

        print("2. SIGKILL a given delay after one boto3 write (an S3 bucket), then up")
        survived: dict[float, bool] = {}
        for delay in DELAYS_S:
            name = f"durability-{int(delay * 1000)}ms"
            target.client("s3").create_bucket(Bucket=name)
            time.sleep(delay)
            kill_service(home)
            target = sandbox_target(sandbox.up(report=lambda _line: None))
            names = {b["Name"] for b in target.client("s3").list_buckets()["Buckets"]}
            survived[delay] = name in names
            print(f"   killed {delay:4.2f} s after the write: {'kept' if survived[delay] else 'LOST'}")

        saves = [float(s) for s in re.findall(r"saved the AWS state \([\d.]+ MB\) in ([\d.]+) s",
                                              (home / "service.log").read_text())]  # fmt: skip
        longest = max(saves, default=0.0)
        lost = [d for d, kept_ in survived.items() if not kept_]
        print("Bound")
        print(f"   saves: {len(saves)}, {min(saves, default=0):.2f}-{longest:.2f} s each")
        print("   a Terraform run: nothing (its state is saved before its lock's release is answered)")
        first_kept = min((d for d in survived if survived[d]), default=None)
        print(f"   other writes: lost when killed {lost} s after, kept from {first_kept} s after")
        quiet = SAVE_QUIET_S + LOOP_INTERVAL_S  # the loop looks every LOOP_INTERVAL_S
        print(f"   bound: {quiet:g} s quiet + one save ({longest:.2f} s) = {quiet + longest:.2f} s")
        print(f"   under steady writes: {SAVE_MAX_DELAY_S + LOOP_INTERVAL_S:g} s + one save")
    finally:
        sandbox.down()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
