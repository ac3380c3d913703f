"""The nbstripout filter that `make setup` installs: a notebook committed with outputs reaches git
stripped, cell ids kept (real git, a temporary repository with the project's filter and attributes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def installed_filter() -> dict[str, str]:
    """The filter settings `make setup` wrote into this checkout's git config."""
    try:
        lines = git(PROJECT_ROOT, "config", "--get-regexp", r"^filter\.nbstripout\.").splitlines()
    except subprocess.CalledProcessError:
        pytest.fail("no nbstripout filter in this checkout's git config: run `make setup`")
    return dict(line.split(" ", 1) for line in lines)


def test_a_notebook_committed_with_outputs_is_stripped(tmp_path: Path) -> None:
    settings = installed_filter()
    assert "--keep-id" in settings["filter.nbstripout.clean"]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    git(repo, "config", "user.email", "lab@example.invalid")
    git(repo, "config", "user.name", "lab")
    for key, value in settings.items():
        git(repo, "config", key, value)
    shutil.copy(PROJECT_ROOT / ".gitattributes", repo / ".gitattributes")

    lesson = json.loads((PROJECT_ROOT / "notebooks" / "00-welcome-and-setup.ipynb").read_text())
    executed = json.loads(json.dumps(lesson))
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    for number, cell in enumerate(code, start=1):
        cell["execution_count"] = number
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [f"output {number}\n"]}]
    (repo / "lesson.ipynb").write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")
    git(repo, "add", ".gitattributes", "lesson.ipynb")
    git(repo, "commit", "--quiet", "-m", "a lesson run in JupyterLab")

    committed = json.loads(git(repo, "show", "HEAD:lesson.ipynb"))
    committed_code = [c for c in committed["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in committed_code)
    assert [c["id"] for c in committed["cells"]] == [c["id"] for c in lesson["cells"]]
    assert committed == lesson  # the committed lesson is a fixed point of the filter
    assert "output 1" in (repo / "lesson.ipynb").read_text()  # the working copy keeps its outputs
