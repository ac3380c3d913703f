"""`labkit` run as a user runs it: a real process with private homes (a sandbox of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.settings import PROJECT_ROOT


class Labkit:
    """Runs `python -m labkit ...` with the private homes; every run's output is kept for the report."""

    def __init__(self, root: Path) -> None:
        self.env = {
            **os.environ,
            "LABKIT_HOME": str(root / "home"),
            "LABKIT_SANDBOX_HOME": str(root / "sandbox"),
        }
        for name in ("AWS_PROFILE", "AWS_REGION", "LABKIT_TARGET", "LABKIT_ENDPOINT_URL"):
            self.env.pop(name, None)

    def __call__(self, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "labkit", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        took = time.monotonic() - started
        print(f"$ labkit {' '.join(args)}  -> exit {result.returncode} in {took:.0f} s", flush=True)
        return result


@contextmanager
def private_sandbox(root: Path) -> Iterator[Labkit]:
    """`labkit sandbox up` with homes under ``root``, and `labkit sandbox down` after."""
    run = Labkit(root)
    up = run("sandbox", "up", timeout_s=120)
    assert up.returncode == 0, up.stderr
    try:
        yield run
    finally:
        run("sandbox", "down", timeout_s=120)
