"""CPU time of Terraform commands under each Go garbage-collector setting (GOGC).

Terraform and the AWS provider are Go programs, and every plan, apply, validate or test decodes
the provider's schema (megabytes of it) anew: most of that work is allocation, so the collector's
target decides a large share of the CPU each command costs. The suite runs hundreds of commands on
two cores, so this is where labkit's default (:data:`labkit.infra.terraform.GO_GC_PERCENT`) comes
from.

Offline, no sandbox: in a copy of ``terraform/``, ``init -backend=false`` once, then for each
setting, ``--rounds`` rounds of ``terraform validate`` in environments/staging and ``terraform test``
in modules/network (a mocked provider); prints each command's CPU seconds (user + system, Terraform
and its provider processes) as the median of the rounds, and the largest resident set.

    .venv/bin/python bench/terraform_gc.py [--rounds 3] [--settings 100,200,400,800]

Measure on a quiet machine: CPU time is less sensitive to other load than wall time, not immune.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from labkit.infra.terraform import cli_config_file, terraform_binary
from labkit.settings import terraform_dir

COMMANDS = {
    "validate": ("environments/staging", ["validate", "-no-color"]),
    "test": ("modules/network", ["test", "-no-color"]),
}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """CPU seconds and largest resident set (KB) of one Terraform command and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([terraform_binary(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"terraform {' '.join(args)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default="100,200,400,800", help="GOGC values, comma-separated")
    options = parser.parse_args()
    settings = [s.strip() for s in options.settings.split(",") if s.strip()]

    with tempfile.TemporaryDirectory(prefix="bench-tf-gc-") as tmp:
        os.environ["LABKIT_HOME"] = str(Path(tmp) / "home")
        (Path(tmp) / "home").mkdir()
        work = Path(tmp) / "terraform"
        shutil.copytree(terraform_dir(), work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GO"))}
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        if (config := cli_config_file()) is not None:
            env["TF_CLI_CONFIG_FILE"] = str(config)
        for folder, _ in COMMANDS.values():
            _run(["init", "-backend=false", "-input=false", "-no-color"], work / folder, env)

        print(f"{'GOGC':>6} {'command':<9} {'cpu s (median)':>15} {'rounds':>24}")
        for setting in settings:
            for name, (folder, args) in COMMANDS.items():
                cpus = [_run(args, work / folder, {**env, "GOGC": setting})[0] for _ in range(options.rounds)]
                rounds = " ".join(f"{c:.2f}" for c in cpus)
                print(f"{setting:>6} {name:<9} {statistics.median(cpus):>15.2f} {rounds:>24}", flush=True)
        # ru_maxrss of children is the largest of any child so far, whichever setting it ran under.
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(f"largest resident set of any command: {largest} MB")


if __name__ == "__main__":
    main()
