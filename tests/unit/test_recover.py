"""The deploy-recover rule (labkit.ops.recover.choose) and the lost-deploy drill's phase names, on
diagnoses built by hand: no sandbox, no Terraform."""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime, timedelta

import pytest

from labkit.deploy.colors import Layout
from labkit.deploy.health import HealthReport
from labkit.deploy.ledger import Deployment, LockHolder
from labkit.deploy.strategy import canary
from labkit.errors import ConfigError, DeployError, DeploymentLockedError, DrillError
from labkit.ops.drills.lost_deploy import ledger_phase
from labkit.ops.recover import Diagnosis, choose

NOW = datetime.now(UTC)
HEALTHY = HealthReport(wanted=2, states={"i-1": ("healthy", None), "i-2": ("healthy", None)})
UNHEALTHY = HealthReport(wanted=2, states={"i-1": ("unhealthy", "Target.FailedHealthChecks")})


def record(phase: str, step_index: int = -1, weight: int = 0) -> Deployment:
    return Deployment(
        id="d1", env="staging", version="1.1.0", from_version="1.0.0", from_color="blue", to_color="green",
        strategy=canary([50, 100]), status="in_progress", phase=phase, step_index=step_index, weight=weight,
        reason=None, who="ci@host pid 1", started_at=NOW, updated_at=NOW, ended_at=None,
    )  # fmt: skip


def dead_lock() -> LockHolder:
    """A lock whose heartbeat is far older than its TTL, held from another host: provably gone."""
    old = NOW - timedelta(minutes=5)
    return LockHolder(
        "staging", "ci@elsewhere pid 1", "d1", old, token="t", heartbeat_at=old, host="elsewhere"
    )


def diagnosis(
    deployment: Deployment | None, *, health: HealthReport = HEALTHY, **changes: object
) -> Diagnosis:
    found = Diagnosis(
        environment="staging",
        record=deployment,
        last_event=None,
        lock=dead_lock() if deployment is not None else None,
        gone="its heartbeat is 300 s old (TTL 30 s)" if deployment is not None else None,
        state_lock=None,
        state_lock_recorded=False,
        terraform_pids=(),
        layout=Layout({"blue": "1.0.0", "green": "1.1.0"}, {"blue": 2, "green": 2}, 0),
        live_green_weight=0,
        new_color=health if deployment is not None else None,
    )
    return dataclasses.replace(found, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("deployment", "health", "move"),
    [
        (record("provision"), HEALTHY, "abort"),
        (record("health"), HEALTHY, "abort"),
        (record("preview"), HEALTHY, "abort"),
        (record("shift-50", 0, 0), HEALTHY, "resume"),
        (record("analysis-50", 0, 50), HEALTHY, "resume"),
        (record("shift-100", 1, 50), UNHEALTHY, "abort"),
        (record("scale-down", 1, 100), HEALTHY, "resume"),
        (record("rollback-park", 0, 0), HEALTHY, "abort"),
    ],
)
def test_auto_chooses_by_the_ledgers_phase(deployment: Deployment, health: HealthReport, move: str) -> None:
    choice = choose(diagnosis(deployment, health=health))
    assert choice.move == move and choice.deployment_id == "d1", choice


def test_nothing_in_progress_is_nothing_to_do() -> None:
    assert choose(diagnosis(None)).move is None


def test_a_lock_without_a_record_is_released() -> None:
    found = diagnosis(None, lock=dead_lock(), gone="its heartbeat is 300 s old")
    assert choose(found).move == "release-lock"
    with pytest.raises(DeployError, match="nothing to resume"):
        choose(found, "resume")


def test_the_decision_parameter_overrides_the_rule() -> None:
    assert choose(diagnosis(record("provision")), "resume").move == "resume"
    assert choose(diagnosis(record("scale-down", 1, 100)), "abort").move == "abort"
    # The controller's resume finishes a rollback begun after the first step, but would provision
    # again one begun before it (a failed health check): refused.
    assert choose(diagnosis(record("rollback", 0, 50)), "resume").move == "resume"
    with pytest.raises(DeployError, match="rolling back"):
        choose(diagnosis(record("rollback-park")), "resume")
    with pytest.raises(ConfigError, match="decision"):
        choose(diagnosis(record("provision")), "restart")


def test_a_controller_that_may_still_run_is_refused() -> None:
    live = dataclasses.replace(dead_lock(), heartbeat_at=datetime.now(UTC), host=socket.gethostname())
    with pytest.raises(DeploymentLockedError, match="still working"):
        choose(diagnosis(record("shift-50", 0, 0), lock=live, gone=None))


def test_a_stale_state_lock_the_controller_did_not_record_is_left_to_unlock_state() -> None:
    found = diagnosis(record("shift-50", 0, 0), state_lock={"ID": "x", "Who": "someone"})
    with pytest.raises(DeployError, match="unlock-state"):
        choose(found)
    # Held by the Terraform still applying, or the one the controller recorded: recovery handles it.
    assert choose(dataclasses.replace(found, terraform_pids=(42,))).move == "resume"
    assert choose(dataclasses.replace(found, state_lock_recorded=True)).move == "resume"


def test_drill_phases_name_the_ledgers_phases() -> None:
    assert [ledger_phase(p, [50, 100]) for p in ("provision", "health", "shift:1", "shift:2", "park")] == [
        "provision", "health", "shift-50", "shift-100", "scale-down",
    ]  # fmt: skip
    for wrong in ("shift:3", "shift:0", "preview", "shift"):
        with pytest.raises(DrillError):
            ledger_phase(wrong, [50, 100])
