"""`labkit deploy` and `labkit rollback` on the command line: parsing and refusals that need no target,
and the stale-controller checks that resume and abort rely on."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from labkit.cli import ExitCode, app
from labkit.cli.deploy import print_outcome
from labkit.deploy import Controller
from labkit.deploy.ledger import Deployment
from labkit.deploy.stale import controller_alive, lock_id
from labkit.deploy.strategy import canary
from labkit.errors import ConfigError, DeployError, StateLockedError
from labkit.target import Target

runner = CliRunner()


def test_deploy_lists_its_subcommands_and_rollback_exists() -> None:
    result = runner.invoke(app, ["deploy", "--help"])
    assert result.exit_code == 0
    for command in ("start", "status", "resume", "abort"):
        assert command in result.output
    assert runner.invoke(app, ["rollback", "--help"]).exit_code == 0


def test_deploy_env_version_runs_start() -> None:
    result = runner.invoke(app, ["deploy", "staging", "--help"])
    assert result.exit_code == 0
    assert "--strategy" in result.output and "--probe-rate" in result.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--strategy", "blue-green"], "Unknown strategy 'blue-green'"),
        (["--weights", "10,fifty,100"], "not a comma-separated list of whole numbers"),
        (["--weights", "50,10,100"], "Weights must rise strictly"),
        (["--bake", "-1"], "bake_s of step 1 is -1.0, out of range"),
        (["--strategy", "linear", "--weights", "10,100"], "The linear strategy has no setting 'weights'"),
    ],
)
def test_a_bad_strategy_is_refused_before_anything_is_touched(args: list[str], problem: str) -> None:
    result = runner.invoke(app, ["deploy", "staging", "1.1.0", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert problem in str(result.exception)


def test_a_controller_refuses_an_environment_that_takes_no_deployments() -> None:
    target = Target(name="sandbox", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(DeployError, match="'global' is not an environment that takes deployments"):
        Controller("global", target)


def test_controller_alive_tells_a_dead_pid_on_this_host_from_a_live_one() -> None:
    host = socket.gethostname()
    assert controller_alive(f"me@{host} pid {os.getpid()}") is True
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert controller_alive(f"me@{host} pid {dead.pid}") is False
    assert controller_alive(f"me@another-host-{host} pid 1") is None
    assert controller_alive("someone") is None


def test_lock_id_is_read_from_terraforms_lock_message() -> None:
    error = StateLockedError(
        "terraform apply in staging: the state is locked by another run.",
        diagnostics=[
            "Error: Error acquiring the state lock\nLock Info:\n"
            "  ID:        cbd6bc83-f344-3761-1789-8f637b5825be\n"
            "  Path:      bucket/staging/terraform.tfstate\n  Who:       root@vm"
        ],
    )
    assert lock_id(error) == "cbd6bc83-f344-3761-1789-8f637b5825be"
    assert lock_id(StateLockedError("locked", diagnostics=["no id here"])) is None


def _record(status: str, reason: str) -> Deployment:
    now = datetime.now(UTC)
    return Deployment(
        id="20260101T000000Z-abcdef", env="staging", version="1.2.0", from_version="1.1.0",
        from_color="green", to_color="blue", strategy=canary(), status=status,  # type: ignore[arg-type]
        phase="rollback", step_index=0, weight=0, reason=reason, who="me@host pid 1",
        started_at=now, updated_at=now, ended_at=now,
    )  # fmt: skip


def test_deploy_exits_0_when_the_release_serves_and_3_when_rolled_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_outcome(_record("succeeded", "1.2.0 serves all traffic on blue"), None)
    assert "deployed: 1.2.0 serves all of staging's traffic on blue" in capsys.readouterr().out
    with pytest.raises(typer.Exit) as exited:
        print_outcome(_record("rolled_back", "analysis failed at blue 10%: blue 5xx rate too high"), None)
    assert exited.value.exit_code == ExitCode.ROLLED_BACK == 3
    assert "rolled back: analysis failed at blue 10%: blue 5xx rate too high" in capsys.readouterr().err
