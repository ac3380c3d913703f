"""Interrupted applies on the session's staging stack, with real Terraform (issue 11, item 2).

labkit runs Terraform in a session of its own with its output in a log file, so:

1. a deploy whose labkit gets SIGINT in the middle of a step's apply has Terraform stop gracefully,
   then rolls back and exits 3;
2. a deploy whose labkit is SIGKILLed in the middle of a step's apply leaves Terraform to finish:
   the state in S3 has the step, the state lock is released, and `labkit deploy resume` completes;
3. `labkit stack apply` is refused while a deployment holds the environment, and, SIGKILLed or
   interrupted mid-apply, leaves the state saved and its lock released.

"Mid-apply" is when Terraform's apply log exists and the state lock is held: Terraform has started
and has not finished. The tests run in order on the state the previous one left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.deploy.ledger import Ledger, default_owner
from labkit.deploy.stale import terraform_running_in
from labkit.infra.stack import Stack, state_key
from labkit.settings import PROJECT_ROOT
from tests.conftest import BLUE_SERVES_1_0_0, StagingStack, target_states, wait_for

pytestmark = pytest.mark.integration

FAST = ["--weights", "10,100", "--bake", "2", "--scale-down-delay", "1", "--health-timeout", "90"]


@pytest.fixture(scope="module")
def staging(staging_stack: StagingStack) -> StagingStack:
    """The session's staging stack put back to blue serving 1.0.0 on two healthy instances."""
    staging_stack.stack().apply(BLUE_SERVES_1_0_0)
    arn = str(staging_stack.outputs["blue_target_group_arn"])
    wait_for(
        "blue healthy",
        lambda: [s for s, _ in target_states(staging_stack.target, arn).values()] == ["healthy", "healthy"],
        timeout_s=90,
    )
    return staging_stack


@pytest.fixture(scope="module", autouse=True)
def _ctrl_c_reaches_labkit() -> Iterator[None]:
    """Let the labkit processes these tests start take SIGINT as a foreground one does.

    A process inherits an ignored SIGINT, and a shell without job control starts its background
    jobs with SIGINT and SIGQUIT ignored (seen: SigIgn 0x81001006 when `make test` ran as one).
    A handler, unlike SIG_IGN, is reset at exec, so labkit's Python installs its own.
    """
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _labkit(*args: str, out: Path) -> subprocess.Popen[str]:
    with out.open("w") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "labkit", *args],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )


def _mid_apply(stack: Stack, proc: subprocess.Popen[str], out: Path, after: str) -> Path:
    """Wait until ``after`` is in ``proc``'s output, then until its next Terraform apply holds the
    state lock; the apply's log file."""
    logs = stack.work_dir / "tfdata" / "logs"
    wait_for(f"{after!r} in labkit's output", lambda: after in out.read_text() or proc.poll(), timeout_s=300)
    assert proc.poll() is None, out.read_text()
    since = time.time()

    def applying() -> Path | None:
        assert proc.poll() is None, out.read_text()
        fresh = [p for p in logs.glob("*-apply-*.out") if p.stat().st_mtime >= since - 1]
        return fresh[0] if fresh and stack.state_lock() is not None else None

    log = wait_for("terraform apply holding the state lock", applying, timeout_s=120, every_s=0.1)
    # How labkit's process treats signals (SigBlk, SigIgn, SigCgt masks), for a failure's report.
    status = Path(f"/proc/{proc.pid}/status")
    if status.exists():
        print(*[line for line in status.read_text().splitlines() if line.startswith("Sig")], sep="\n")
    return log


def _events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _state_serial(staging: StagingStack, stack: Stack) -> int:
    body = staging.target.client("s3").get_object(Bucket=stack.names.state_bucket, Key=state_key("staging"))
    return int(json.loads(body["Body"].read())["serial"])


def _deregistration_delays(staging: StagingStack, stack: Stack) -> list[str]:
    """The target groups' deregistration delay as the state in S3 records it."""
    body = staging.target.client("s3").get_object(Bucket=stack.names.state_bucket, Key=state_key("staging"))
    state = json.loads(body["Body"].read())
    return [
        str(instance["attributes"]["deregistration_delay"])
        for resource in state["resources"]
        if resource["type"] == "aws_lb_target_group" and resource["mode"] == "managed"
        for instance in resource["instances"]
    ]


def test_1_sigint_mid_apply_stops_terraform_gracefully_then_rolls_back_and_exits_3(
    staging: StagingStack, tmp_path: Path
) -> None:
    stack = staging.stack()
    out = tmp_path / "deploy.log"
    # deploy.yml's command (faster): its exit 3 on a rollback is what fails the workflow's job.
    proc = _labkit("deploy", "staging", "1.1.0", *FAST, out=out)
    try:
        _mid_apply(stack, proc, out, "shift: green to 10%")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    print(text)
    assert "asked terraform" in text and "to stop gracefully" in text
    assert code == 3, text
    assert "rolled back: interrupted (Ctrl-C)" in text
    assert stack.state_lock() is None
    layout = stack.deployment()
    assert (layout["green_weight"], layout["green_capacity"], layout["blue_capacity"]) == (0, 0, 2)


def test_2_sigkill_mid_step_apply_terraform_finishes_and_resume_completes(
    staging: StagingStack, tmp_path: Path
) -> None:
    stack = staging.stack()
    out = tmp_path / "deploy.log"
    proc = _labkit("deploy", "staging", "1.1.0", *FAST, out=out)
    try:
        log = _mid_apply(stack, proc, out, "shift: green to 10%")
        terraform = terraform_running_in(stack.work_dir / "tfdata")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out.read_text())
    assert terraform, "no terraform ran when labkit was killed"
    # Terraform outlived labkit: it finished the apply on its own, saved the state and unlocked.
    wait_for("the orphaned terraform to finish", lambda: not terraform_running_in(stack.work_dir / "tfdata"),
             timeout_s=300)  # fmt: skip
    summary = [e for e in _events(log) if e.get("type") == "change_summary"]
    assert summary and summary[-1]["changes"]["change"] >= 1, log.read_text()[-2000:]  # type: ignore[index]
    assert stack.state_lock() is None
    assert stack.deployment()["green_weight"] == 10  # read from the state in S3

    resumed = subprocess.run(
        [sys.executable, "-m", "labkit", "deploy", "resume", "staging"],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )  # fmt: skip
    print(resumed.stdout, resumed.stderr)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "lock: taken over from" in resumed.stdout and "has exited" in resumed.stdout
    assert "deployed: 1.1.0 serves all of staging's traffic on green" in resumed.stdout
    layout = stack.deployment()
    assert (layout["green_weight"], layout["blue_capacity"]) == (100, 0)


def test_3_stack_apply_is_refused_while_deploying_and_survives_its_labkit(
    staging: StagingStack, tmp_path: Path
) -> None:
    stack = staging.stack()
    ledger = Ledger(staging.target, stack.names.ledger_table)
    lock = ledger.acquire_lock("staging", "a deploy (test) " + default_owner(), "dep-test")
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "labkit", "stack", "apply", "staging", "--var", "deregistration_delay=7"],
            capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
        )  # fmt: skip
    finally:
        ledger.release_lock(lock)
    assert refused.returncode == 4  # a lock held by someone else
    assert "Refusing to apply staging: a deployment holds it, a deploy (test)" in refused.stderr
    assert "(deployment dep-test) since" in refused.stderr

    # SIGKILL mid-apply: Terraform finishes, the state in S3 has the change, the lock is released.
    serial = _state_serial(staging, stack)
    out = tmp_path / "apply.log"
    proc = _labkit("stack", "apply", "staging", "--var", "deregistration_delay=7", out=out)
    log = _mid_apply(stack, proc, out, "")
    terraform = terraform_running_in(stack.work_dir / "tfdata")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert terraform, "no terraform ran when labkit was killed"
    wait_for("the orphaned terraform to finish", lambda: not terraform_running_in(stack.work_dir / "tfdata"),
             timeout_s=300)  # fmt: skip
    applied = [e for e in _events(log) if e.get("type") == "change_summary"]
    assert applied and applied[-1]["changes"]["operation"] == "apply", log.read_text()[-3000:]  # type: ignore[index]
    assert stack.state_lock() is None
    assert _state_serial(staging, stack) > serial
    assert set(_deregistration_delays(staging, stack)) == {"7"}

    # SIGINT mid-apply: Terraform stops gracefully, saving what it did; the lock is released.
    out = tmp_path / "apply-int.log"
    proc = _labkit("stack", "apply", "staging", "--var", "deregistration_delay=6", out=out)
    _mid_apply(stack, proc, out, "")
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=300)
    text = out.read_text()
    print(text)
    assert code != 0 and "to stop gracefully" in text
    assert not terraform_running_in(stack.work_dir / "tfdata")
    assert stack.state_lock() is None
    assert set(_deregistration_delays(staging, stack)) <= {"6", "7"}  # stopped before or after a change
