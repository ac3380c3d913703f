"""10-disaster-drills, executed the way `make lab` runs it after 09: `labkit run` on a sandbox with
nothing built, in a private LABKIT_HOME.

The lesson builds staging, runs three drills with `labkit.ops.drill.run_drill` (each: the steady
state checked, the fault injected, its runbook's dry run and confirmed run under papermill, the
steady state checked again), asserts every drill verified with no state version lost, runs each
runbook a second time (nothing to do), and tears everything down. This test checks the run passed,
that each drill's runbook ran as a dry run, for real, then again, and the figures it printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("notebook-10")]

LESSON = PROJECT_ROOT / "notebooks" / "10-disaster-drills.ipynb"
RUN_TIMEOUT_S = 30 * 60

Run = tuple[Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def lesson_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("drills-lesson")
    out = work / "run"
    env = {**os.environ, "LABKIT_HOME": str(work / "home")}
    env.pop("LABKIT_SANDBOX_HOME", None)
    command = [sys.executable, "-m", "labkit", "run", str(LESSON), "--out", str(out), "--quiet"]
    try:
        proc = subprocess.run(
            command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        yield out, proc
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "sandbox", "down"], env=env, capture_output=True)


def _stdout(executed: Path) -> str:
    cells = json.loads(executed.read_text())["cells"]
    return "".join(
        "".join(output.get("text", ""))
        for cell in cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_the_drills_lesson_runs_headless_from_an_empty_sandbox(lesson_run: Run) -> None:
    out, proc = lesson_run
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    assert (out / "10-drills.png").stat().st_size > 10_000


def test_each_drill_was_verified_after_a_dry_run_and_a_confirmed_run(lesson_run: Run) -> None:
    out, _ = lesson_run
    printed = _stdout(out / LESSON.name)
    for drill, runbook in (
        ("corrupt-state", "restore-state"),
        ("stuck-lock", "unlock-state"),
        ("accidental-destroy", "restore-environment"),
    ):
        assert f"drill {drill} on staging: VERIFIED" in printed
        assert f"{runbook:<20} dry run  planned" in printed
        assert f"{runbook:<20} act      recovered" in printed
        assert f"{runbook:<20} second run: nothing-to-do" in printed
    assert printed.count("state versions lost 0") == 3
    # The destroy took the service down, and the probe saw it (from the injection to the recovery).
    pattern = r"drill (\S+) on staging: VERIFIED\n(?:.*\n){3}  requests failed     (\d+) of"
    failed = dict(re.findall(pattern, printed))
    assert set(failed) == {"corrupt-state", "stuck-lock", "accidental-destroy"}
    assert int(failed["accidental-destroy"]) > 0
    assert "staging and global removed" in printed
