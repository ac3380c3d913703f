"""The CLI's one context: root options, validation before anything starts, --version, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import ExitCode, app
from labkit.cli.context import EXIT_CODES_TEXT, exit_code_for
from labkit.errors import (
    ConfigError,
    DeployError,
    DeploymentLockedError,
    LabkitError,
    ReleaseError,
    SpendNotAllowedError,
    StackError,
    StateLockedError,
)
from labkit.settings import PROJECT_ROOT

runner = CliRunner()

CODES = {0: "success", 1: "error", 2: "usage", 3: "deployment rolled back", 4: "lock held by someone else"}


def _labkit(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a process whose sandbox folder is private and empty."""
    environ = {
        **os.environ,
        "LABKIT_HOME": str(tmp_path / "home"),
        "LABKIT_SANDBOX_HOME": str(tmp_path / "sandbox"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], capture_output=True, text=True, env=environ, timeout=60
    )


def test_the_exit_codes_are_the_shared_contract() -> None:
    assert {int(code): code.name for code in ExitCode} == {
        0: "OK", 1: "ERROR", 2: "USAGE", 3: "ROLLED_BACK", 4: "LOCKED",
    }  # fmt: skip


def test_errors_map_to_exit_codes_in_one_place() -> None:
    assert exit_code_for(DeploymentLockedError("held")) is ExitCode.LOCKED
    assert exit_code_for(StateLockedError("held")) is ExitCode.LOCKED
    assert exit_code_for(ConfigError("bad --var")) is ExitCode.USAGE
    for error in (LabkitError("x"), StackError("x"), DeployError("x"), ReleaseError("x")):
        assert exit_code_for(error) is ExitCode.ERROR
    assert exit_code_for(SpendNotAllowedError("x")) is ExitCode.ERROR


def test_help_and_readme_document_every_exit_code() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    readme = (PROJECT_ROOT / "README.md").read_text()
    for code, meaning in CODES.items():
        assert f"{code} {meaning}" in EXIT_CODES_TEXT
        assert f"| {code} | {meaning}" in readme
    assert "Exit codes:" in " ".join(result.output.split())


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("labkit ") and result.output.split()[1][0].isdigit()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["deploy", "nosuchenv", "1.0.0"], "'nosuchenv' takes no deployments"),
        (["deploy", "staging", "1.0"], "MAJOR.MINOR.PATCH"),
        (["deploy", "status", "global"], "'global' takes no deployments"),
        (["stack", "apply", "nosuchenv"], "'nosuchenv' is not an environment"),
        (["ledger", "qa"], "'qa' has no deployments"),
        (["ledger", "--force-unlock"], "--force-unlock needs the environment"),
        (["--target", "azure", "doctor"], "'azure' is not one of"),
        (["--region", "eu-west-1", "stack", "output", "global"], "the sandbox is one region"),
        (["--target", "aws", "--endpoint-url", "http://127.0.0.1:1", "doctor"], "--endpoint-url is for"),
    ],
)
def test_bad_arguments_exit_2_before_anything_starts(args: list[str], problem: str, tmp_path: Path) -> None:
    result = _labkit(args, tmp_path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert problem in " ".join(result.stderr.replace("│", " ").split()), result.stderr
    sandbox = tmp_path / "sandbox"
    assert not sandbox.exists() or not any(sandbox.iterdir()), "the sandbox was started"


def test_a_labkit_error_on_bad_input_exits_2(tmp_path: Path) -> None:
    result = _labkit(["stack", "plan", "staging", "--var", "green_weight"], tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert "error: --var 'green_weight' is not NAME=VALUE" in result.stderr


def test_aws_region_and_profile_from_the_environment_do_not_reach_the_sandbox(tmp_path: Path) -> None:
    """A user's AWS_REGION describes their account; the sandbox (us-east-1) ignores it."""
    result = _labkit(
        ["sandbox", "status", "--json"], tmp_path, AWS_REGION="eu-west-1", AWS_PROFILE="someone"
    )
    assert result.returncode == ExitCode.ERROR  # not running, and said so as JSON
    assert '"running": false' in result.stdout


def test_the_target_comes_from_labkit_target(tmp_path: Path) -> None:
    result = _labkit(["sandbox", "status"], tmp_path, LABKIT_TARGET="nosuch")
    assert result.returncode == ExitCode.USAGE
    assert "nosuch" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["sandbox", "status"],
        ["stack", "output"],
        ["inventory", "orphans"],
        ["deploy", "status"],
        ["ledger"],
        ["doctor"],
        ["release", "list"],
    ],
)
def test_every_command_that_prints_state_takes_json(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output


def test_no_command_repeats_the_root_options() -> None:
    """--target and friends are set once, before the command; no command declares its own."""
    import typer.main

    root = typer.main.get_command(app)
    seen: list[str] = []

    def walk(command: object, path: str) -> None:
        for param in getattr(command, "params", []):
            for name in getattr(param, "opts", []):
                if name in ("--target", "--region", "--profile", "--endpoint-url", "--allow-spend"):
                    seen.append(f"{path} {name}")
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}")

    walk(root, "labkit")
    assert sorted(seen) == sorted(
        f"labkit {o}" for o in ("--target", "--region", "--profile", "--endpoint-url", "--allow-spend")
    )


def test_doctor_json_is_one_document_with_every_check() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    checks = json.loads(result.output)
    assert [c["name"] for c in checks][:3] == ["python", "terraform", "aws provider"]
    assert all(set(c) == {"name", "ok", "detail", "fix"} for c in checks)
    assert result.exit_code == (ExitCode.ERROR if any(c["ok"] is False for c in checks) else ExitCode.OK)
