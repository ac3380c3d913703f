"""12-database-migrations, executed the way `make lab` runs it after 11: `labkit run` on a sandbox
with nothing built, in a private LABKIT_HOME.

The lesson builds staging with its database and deploys a column rename three ways under a read
probe and a write probe: in one step (rolled back, the schema first), then expand and contract
(no failed request, no lost write), then rolls back to the expand release (the schema downgraded
by the newer release's code), and tears everything down. Each step asserts its own result in the
notebook; this test checks the run passed, what it printed, and that its figures are there. The
read probe runs at 50 requests/s here (the lesson's default is 100) to spare the suite's CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.settings import PROJECT_ROOT
from tests.notebooks.lessons import run_lesson

# A group of its own, handed out with the other long groups (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("notebook-12")]

LESSON = PROJECT_ROOT / "notebooks" / "12-database-migrations.ipynb"
RUN_TIMEOUT_S = 20 * 60


def test_the_database_lesson_runs_headless_from_an_empty_sandbox(tmp_path: Path) -> None:
    outputs, printed = run_lesson(LESSON, tmp_path, "-p", "rate", "50", timeout_s=RUN_TIMEOUT_S)
    assert "upgraded from none to 0001" in printed  # release 1.0.0's migrations made the schema
    assert "rolled_back - analysis failed at green 10%: blue, still serving, answers 5xx too" in printed
    assert "rollback-migrate" in printed and "downgraded from 0002_onestep to 0001" in printed
    assert "expanded from 0001 to 0002" in printed and "upgraded from 0002 to 0003" in printed
    assert printed.count(", 0 failed; read back:") >= 2  # the expand and contract deploys' writes
    assert "0 lost, 0 unreadable" in printed
    assert "schema: 0002" in printed  # after the rollback to 1.1.0
    assert "staging destroyed and global removed" in printed
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the one-step and the contract deploys' writes over time
