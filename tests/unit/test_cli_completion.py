"""Shell completion for `labkit` (typer's), as the README tells users to install it."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from labkit.cli import app


def test_labkit_prints_a_bash_completion_script_that_completes_its_commands() -> None:
    shown = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="labkit")
    assert shown.exit_code == 0, shown.output
    assert "_LABKIT_COMPLETE=complete_bash" in shown.output

    # What bash asks while the user types `labkit sta<TAB>`.
    env = {**os.environ, "_LABKIT_COMPLETE": "complete_bash", "COMP_WORDS": "labkit sta", "COMP_CWORD": "1"}
    completed = CliRunner().invoke(app, [], prog_name="labkit", env=env)
    assert completed.output.split() == ["stack"]
