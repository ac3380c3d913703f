"""`labkit run` executing real fixture notebooks on a real Jupyter kernel (papermill)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import NotebookRunError
from labkit.lab.run import run_notebooks

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notebooks"


def labkit_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", "run", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def cells(path: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
    return cells


def text(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def stdout_of(cell: dict[str, Any]) -> str:
    return "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")


Run = tuple[Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def path_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The fixture learning path, run once through the CLI with two parameters."""
    out = tmp_path_factory.mktemp("path-run") / "run"
    proc = labkit_run(
        str(FIXTURES / "path"), "-p", "greeting", '"hello there"', "-p", "repeat", "3", "--out", str(out)
    )
    return out, proc


def test_folder_runs_in_order_with_parameters(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # the progress lines, the streamed cell output and the summary with wall times
    lines = proc.stdout.splitlines()
    assert lines[0] == "[1/2] 01-greet.ipynb (greeting='hello there', repeat=3)"
    assert "hello there hello there hello there" in lines
    assert any(line.startswith("[2/2] 02-count.ipynb") for line in lines)
    assert [line.split()[:2] for line in lines if line.startswith(("01-", "02-"))] == [
        ["01-greet.ipynb", "ok"],
        ["02-count.ipynb", "ok"],
    ]
    assert f"executed copies: {out}" in lines

    # the executed copy holds the injected values right after the parameters cell, and their effect
    executed = cells(out / "01-greet.ipynb")
    assert "parameters" in executed[1]["metadata"]["tags"]
    assert "injected-parameters" in executed[2]["metadata"]["tags"]
    assert 'greeting = "hello there"' in text(executed[2]) and "repeat = 3" in text(executed[2])
    assert stdout_of(executed[4]) == "hello there hello there hello there\n"
    assert all(c["metadata"]["papermill"]["status"] == "completed" for c in executed)

    # 02 declares neither parameter, so nothing was injected; it saved its artifact in the run folder
    count_cells = cells(out / "02-count.ipynb")
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in count_cells)
    assert (out / "count.txt").read_text() == "6"
    # the sources stay stripped
    assert all(c.get("outputs", []) == [] for c in cells(FIXTURES / "path" / "01-greet.ipynb"))

    # beside each executed copy, what it proved: every checkpoint (assert cell) passed
    result = json.loads((out / "01-greet.result.json").read_text())
    assert result["ok"] is True and result["parameters"] == {"greeting": "hello there", "repeat": 3}
    assert [(c["cell"], c["status"]) for c in result["checkpoints"]] == [(2, "passed"), (4, "passed")]
    assert result["checkpoints"][0]["check"].startswith("assert isinstance(greeting, str)")


def test_report_renders_the_run(path_run: Run) -> None:
    out, _ = path_run
    proc = subprocess.run(
        [sys.executable, "-m", "labkit", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report: {out / 'site' / 'index.html'}"
    index = (out / "site" / "index.html").read_text()
    assert '<a href="01-greet.html">01 Greet</a></td>\n<td>ok</td>' in index
    assert "<code>greeting='hello there', repeat=3</code>" in index
    assert "hello there hello there hello there" in (out / "site" / "01-greet.html").read_text()


def test_failing_notebook_names_the_cell_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = labkit_run(str(FIXTURES / "failing" / "01-fails.ipynb"), "--out", str(out), "--quiet")
    assert proc.returncode == 1
    assert (
        f"error: {FIXTURES / 'failing' / '01-fails.ipynb'} failed at cell 3 "
        "('# checkpoint: the answer is what we expect'): AssertionError: answer is 42, expected 41"
    ) in proc.stderr
    assert f"Open the executed copy {out / '01-fails.ipynb'}" in proc.stderr
    # the traceback and the summary are printed before the error
    assert "----> 2 assert answer == expected" in proc.stdout
    assert any(line.split()[:2] == ["01-fails.ipynb", "FAILED"] for line in proc.stdout.splitlines())
    executed = cells(out / "01-fails.ipynb")
    failed = [c for c in executed if c["metadata"].get("papermill", {}).get("exception")]
    assert [text(c).splitlines()[0] for c in failed] == ["# checkpoint: the answer is what we expect"]
    # its result names the failed checkpoint, as numbered in the source
    result = json.loads((out / "01-fails.result.json").read_text())
    assert result["ok"] is False and result["failure"].startswith("cell 3 ")
    assert [c for c in result["checkpoints"] if c["status"] != "passed"] == [
        {
            "cell": 3,
            "check": 'assert answer == expected, f"answer is {answer}, expected {expected}"',
            "status": "failed",
        }
    ]


def test_cell_timeout_stops_the_notebook(tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(NotebookRunError) as info:
        run_notebooks(FIXTURES / "slow", {"seconds": 30}, timeout=2, out_dir=tmp_path, reporter=lines.append)
    report = info.value.report
    assert report is not None and report.failed is not None and report.failed.failure is not None
    failure = report.failed.failure
    assert (failure.cell_index, failure.first_line, failure.ename) == (2, "import time", "CellTimeoutError")
    assert "timed out" in failure.evalue
    assert report.failed.seconds < 25  # stopped by the 2 s limit, not by the 30 s sleep
    assert lines[0] == "[1/1] 01-sleeps.ipynb (seconds=30)"
