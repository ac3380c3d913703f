"""Real ``labkit stack apply`` processes for the state drills (stuck-lock, concurrent-applies).

Each is the ``labkit`` CLI in a process group of its own, started with the target's root options,
with its output in a log file; the change it applies is a deployment variable that touches one
listener rule (:func:`preview_change`), so it has work to do and carries over to later applies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from labkit.deploy.stale import terraform_running_in
from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.target import Target


def root_options(target: Target) -> list[str]:
    """The ``labkit`` root options that reach ``target`` from another process."""
    if target.is_sandbox:
        return ["--target", "sandbox", "--endpoint-url", str(target.endpoint_url), "--region", target.region]
    options = ["--target", "aws", "--region", target.region]
    if target.profile:
        options += ["--profile", target.profile]
    return options + (["--allow-spend"] if target.allow_spend else [])


def preview_change(stack: Stack) -> dict[str, str]:
    """A change with work in it: point the preview header at the other color than it names now
    (one listener rule; a deployment variable, so later applies keep it and plan no changes)."""
    current = stack.deployment().get("preview_color")
    return {"preview_color": "green" if current == "blue" else "blue"}


def start_apply(
    target: Target, environment: str, variables: Mapping[str, Any], log: Path
) -> subprocess.Popen[bytes]:
    """``labkit stack apply ENV --var ... --no-wait`` in a new process group, output to ``log``."""
    command = [
        sys.executable,
        "-m",
        "labkit",
        *root_options(target),
        "stack",
        "apply",
        environment,
        "--no-wait",
    ]
    for name, value in variables.items():
        command += ["--var", f"{name}={'null' if value is None else value}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, *, every_s: float = 0.05) -> None:
    """Poll ``check`` until it holds; DrillError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DrillError(
                f"Timed out after {timeout_s:g} s waiting for {what}.", hint="See the log named above."
            )
        time.sleep(every_s)


def kill_apply(proc: subprocess.Popen[bytes], stack: Stack) -> list[int]:
    """SIGKILL the apply's process group and the Terraform session it started; the pids killed.

    labkit runs Terraform in a session of its own so that it outlives labkit; a host or container
    that dies takes both, which is what leaves the state lock behind.
    """
    data_dir = stack.terraform.data_dir
    terraform = terraform_running_in(data_dir) if data_dir else []
    killed = [proc.pid, *terraform]
    own_group = os.getpgrp()
    for pid in killed:
        with suppress(ProcessLookupError):
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
    proc.wait()
    wait_until(
        "the killed Terraform processes to exit",
        lambda: not (set(terraform_running_in(data_dir)) & set(terraform)) if data_dir else True,
        timeout_s=30,
    )
    return killed
