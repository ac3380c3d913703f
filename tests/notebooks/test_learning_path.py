"""The learning path, executed the way `make lab` runs it: `labkit run notebooks` on its own sandbox.

One run of notebooks 00 to 09 in order (each builds on the one before), in a private LABKIT_HOME
so it neither sees nor disturbs the other tests' sandbox. Every notebook asserts its own
checkpoints; this test checks that the run passed all of them, left the executed copies and the
figures, and that the parameters given on the command line reached the notebooks that declare them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("notebooks")]

NOTEBOOKS = PROJECT_ROOT / "notebooks"
#: The figures the lessons save (06 and 07 plot their deploys, 00 and 08 cost and the ledger).
FIGURES = {
    "00-staging-cost.png",
    "06-traffic.png",
    "06-timeline.png",
    "06-latency.png",
    "07-rollback-traffic.png",
    "07-rollback-timeline.png",
    "08-timeline.png",
    "08-durations.png",
    "08-dora.png",
    "08-cost.png",
}
#: A whole path run takes about 10 minutes on the 2-core CI machine.
RUN_TIMEOUT_S = 40 * 60


Run = tuple[Path, subprocess.CompletedProcess[str]]


def _cells(path: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
    return cells


@pytest.fixture(scope="module")
def path_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("learning-path")
    out = work / "run"
    env = {**os.environ, "LABKIT_HOME": str(work / "home")}
    env.pop("LABKIT_SANDBOX_HOME", None)
    command = [sys.executable, "-m", "labkit", "run", str(NOTEBOOKS), "--out", str(out), "--quiet",
               "-p", "rate", "40"]  # fmt: skip
    try:
        proc = subprocess.run(
            command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        yield out, proc
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "sandbox", "down"], env=env, capture_output=True)


def test_every_notebook_runs_headless_on_the_sandbox(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    sources = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert [f"{n:02d}" for n in range(10)] == [name[:2] for name in sources]
    assert sorted(p.name for p in out.glob("*.ipynb")) == sources
    for name in sources:
        row = re.search(rf"^{re.escape(name)}\s+ok\s", proc.stdout, re.MULTILINE)
        assert row, f"{name}: no ok row in the summary"
        executed = _cells(out / name)
        code = [c for c in executed if c["cell_type"] == "code"]
        assert all(c["execution_count"] is not None for c in code), f"{name}: a cell did not run"
        errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"


def test_the_figures_are_saved_next_to_the_executed_notebooks(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0
    saved = {p.name: p.stat().st_size for p in out.glob("*.png")}
    assert set(saved) >= FIGURES, f"missing: {sorted(FIGURES - set(saved))}"
    assert all(size > 10_000 for size in saved.values()), saved  # a real figure, not an empty canvas
    assert f"executed copies: {out}" in proc.stdout and "figures (" in proc.stdout


def test_a_command_line_parameter_reaches_the_notebooks_that_declare_it(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0
    for name in ("06-traffic-shifting.ipynb", "07-automated-rollback.ipynb"):
        injected = [c for c in _cells(out / name) if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "rate = 40" in "".join(injected[0]["source"])
    untouched = _cells(out / "04-blue-fleet.ipynb")
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in untouched)
