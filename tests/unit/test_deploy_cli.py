"""`labkit deploy` and `labkit rollback` on the command line: parsing and refusals that need no target,
and the stale-controller checks that resume and abort rely on."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from labkit.cli import ExitCode, app
from labkit.cli.deploy import print_outcome
from labkit.deploy import Controller
from labkit.deploy.ledger import Deployment, LockHolder, process_start
from labkit.deploy.stale import controller_alive, holder_gone, lock_fields, same_lock
from labkit.deploy.strategy import canary
from labkit.errors import ConfigError, DeployError, SpendNotAllowedError, StateLockedError
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


LOCK_MESSAGE = (
    "Error: Error acquiring the state lock\n  Lock Info:\n"
    "    ID:        cbd6bc83-f344-3761-1789-8f637b5825be\n"
    "    Path:      bucket/staging/terraform.tfstate\n"
    "    Operation: OperationTypeApply\n"
    "    Who:       root@vm\n"
    "    Version:   1.11.4\n"
    "    Created:   2026-12-02 10:50:01.0123 +0000 UTC\n"
)


def test_only_the_recorded_terraform_lock_matches() -> None:
    error = StateLockedError("terraform apply in staging: the state is locked.", diagnostics=[LOCK_MESSAGE])
    found = lock_fields(error)
    assert found == {
        "ID": "cbd6bc83-f344-3761-1789-8f637b5825be",
        "Who": "root@vm",
        "Created": "2026-12-02 10:50:01.0123 +0000 UTC",
    }
    # The lock file stores Created as RFC 3339; the same instant matches.
    recorded = {"ID": found["ID"], "Who": "root@vm", "Created": "2026-12-02T10:50:01.0123Z"}
    assert same_lock(found, recorded)
    assert not same_lock(found, {**recorded, "ID": "another"})
    assert not same_lock(found, {**recorded, "Who": "alice@vm"})
    assert not same_lock(found, {**recorded, "Created": "2026-12-02T10:50:01.0124Z"})
    assert not same_lock(found, {})
    assert not same_lock(lock_fields(StateLockedError("locked", diagnostics=["no id here"])), recorded)


def _holder(**changes: object) -> LockHolder:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "env": "staging", "owner": "me@host pid 1", "deployment_id": "d", "acquired_at": now,
        "token": "t", "heartbeat_at": now, "ttl_s": 30.0, "host": socket.gethostname(),
        "pid": os.getpid(), "pid_start": process_start(os.getpid()),
    }  # fmt: skip
    fields.update(changes)
    return LockHolder(**fields)  # type: ignore[arg-type]


def test_a_holder_is_gone_only_when_it_is_proven() -> None:
    stale = datetime.now(UTC) - timedelta(seconds=31)
    # This very process, heartbeat fresh: alive, even with --force.
    assert holder_gone(_holder()) is None
    assert holder_gone(_holder(), force=True) is None
    # Its pid alive with a stale heartbeat (a hung controller): only --force takes over.
    assert holder_gone(_holder(heartbeat_at=stale)) is None
    assert "heartbeat is 31 s old" in str(holder_gone(_holder(heartbeat_at=stale), force=True))
    # The pid reused by a later process: gone.
    assert "now belongs to another process" in str(holder_gone(_holder(pid_start="1")))
    # The pid dead: gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert "has exited" in str(holder_gone(_holder(pid=dead.pid)))
    # Another host: only the heartbeat tells.
    assert holder_gone(_holder(host="elsewhere")) is None
    assert "heartbeat is 31 s old (TTL 30 s)" in str(
        holder_gone(_holder(host="elsewhere", heartbeat_at=stale))
    )


def test_a_deploy_on_aws_without_allow_spend_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_call(self: Target, service: str) -> None:
        raise AssertionError(f"{service} was called before the spend check")

    monkeypatch.setattr(Target, "client", no_call)
    controller = Controller("staging", Target(name="aws", region="us-east-1"), say=lambda line: None)
    with pytest.raises(SpendNotAllowedError, match=r"Refusing to deploy 1\.4\.0 to staging on AWS"):
        controller.deploy("1.4.0")
    for call in (controller.resume, controller.abort, controller.rollback):
        with pytest.raises(SpendNotAllowedError):
            call()


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
