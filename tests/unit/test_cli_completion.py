"""Shell completion for `labkit` (typer's), as the README tells users to install it."""

from __future__ import annotations

import os

import pytest
import typer.completion
from typer.testing import CliRunner

from labkit.cli import app


def test_labkit_prints_a_bash_completion_script_that_completes_its_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `labkit --show-completion` (the README's) detects the user's shell from the process tree; a
    # test run's tree may hold none (make runs recipes with sh), so the user here runs bash.
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    shown = CliRunner().invoke(app, ["--show-completion"], prog_name="labkit")
    assert shown.exit_code == 0, shown.output
    assert "_LABKIT_COMPLETE=complete_bash" in shown.output

    # What bash asks while the user types `labkit sta<TAB>`.
    env = {**os.environ, "_LABKIT_COMPLETE": "complete_bash", "COMP_WORDS": "labkit sta", "COMP_CWORD": "1"}
    completed = CliRunner().invoke(app, [], prog_name="labkit", env=env)
    assert completed.output.split() == ["stack"]
