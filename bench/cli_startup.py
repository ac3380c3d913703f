"""Wall time of `labkit --help` and `labkit sandbox status`, each run as a fresh process.

The goal for `labkit --help` is under 0.5 s on the dev box: the CLI imports pandas, matplotlib, moto,
papermill and boto3 only inside the commands that use them. Each command runs ``--runs`` times (after
one warm-up run that fills the OS file cache); the median and the fastest run are printed.

    .venv/bin/python bench/cli_startup.py [--runs 7]

`labkit sandbox status` only reads the sandbox's files (it starts nothing), so it is safe to time
whether the sandbox runs or not. ``-X importtime`` on the same command shows what is left to trim:

    .venv/bin/python -X importtime -m labkit --help 2>&1 | sort -t'|' -k2 -n | tail
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_HELP_S = 0.5
COMMANDS = (("--help",), ("sandbox", "status"))


def labkit_command() -> list[str]:
    """The `labkit` console script beside this Python (the venv's), else ``python -m labkit``."""
    script = Path(sys.executable).with_name("labkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labkit"]


def time_once(command: list[str]) -> float:
    start = time.perf_counter()
    # `sandbox status` exits 1 when the sandbox is not running: the time is what counts here.
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    args = parser.parse_args()
    base = labkit_command()
    for extra in COMMANDS:
        command = [*base, *extra]
        time_once(command)  # warm-up
        times = [time_once(command) for _ in range(args.runs)]
        label = "labkit " + " ".join(extra)
        median = statistics.median(times)
        line = f"{label:<24} median {median:.3f} s  fastest {min(times):.3f} s  ({args.runs} runs)"
        if extra == ("--help",):
            verdict = "within" if median < GOAL_HELP_S else "OVER"
            line += f"  goal < {GOAL_HELP_S} s: {verdict}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
