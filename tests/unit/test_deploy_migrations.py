"""Where a deployment runs the release's migrations (issue 15 item 4): expand before the release
takes traffic, contract once the old color is parked, and on a rollback the schema back to the
old release's revision first. The controller's Terraform, health and gate are stood in for here;
the migrations themselves run against PostgreSQL in tests/integration/test_app_database.py
(``expand``, idempotent ``downgrade``) and tests/integration/test_sandbox_databases.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.deploy import controller as controller_module
from labkit.deploy.colors import Layout
from labkit.deploy.controller import Controller
from labkit.deploy.ledger import Deployment
from labkit.deploy.strategy import canary
from labkit.errors import DeploymentFailed, MigrationError
from labkit.target import sandbox

DATABASE = {
    "identifier": "bglab-staging-db",
    "address": "127.0.0.1",
    "port": 15432,
    "database_name": "orders",
    "master_user_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1-AbCdEf",
}
#: Before the deployment: blue serves 1.0.0; green gets 1.2.0.
BEFORE = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 1, "green_capacity": 0,
          "green_weight": 0}  # fmt: skip
#: Each release's revision, as `python -m app.migrations revision` prints it.
REVISIONS = {"1.0.0": "0001", "1.2.0": "0003"}


def record(phase: str = "lock", step_index: int = -1) -> Deployment:
    now = datetime.now(UTC)
    return Deployment(
        id="d-1", env="staging", version="1.2.0", from_version="1.0.0", from_color="blue",
        to_color="green", strategy=canary((10, 100), bake_s=0), status="in_progress", phase=phase,
        step_index=step_index, weight=0, reason=None, who="test", started_at=now, updated_at=now,
        ended_at=None,
    )  # fmt: skip


class Recorder:
    """A controller whose every outside effect is a line in ``calls``."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, database: bool = True, fail: tuple[str, ...] = ()
    ) -> None:
        self.calls: list[str] = []
        self.controller = Controller("staging", sandbox("http://127.0.0.1:9"), say=lambda _line: None)
        c = self.controller
        outputs = {"deployment": BEFORE, "database": DATABASE if database else None}

        def run_migrations(
            target: Any, bucket: str, version: str, action: str, db: Any, revision: str | None = None
        ) -> str:
            if action == "revision":
                return REVISIONS[version] + "\n"
            self.calls.append(f"migrations {version} {action}{' ' + revision if revision else ''}")
            if action in fail:
                raise MigrationError(f"{action} failed")
            return {"expand": "expanded", "upgrade": "upgraded", "downgrade": "downgraded"}[action] + "\n"

        @contextmanager
        def phase(rec: Deployment, name: str) -> Iterator[Any]:
            event = SimpleNamespace(detail=None)
            yield event
            self.calls.append(f"phase {name}: {event.detail}")

        def step(rec: Deployment, index: int, *args: Any, **kwargs: Any) -> None:
            self.calls.append(f"step {rec.strategy.steps[index].weight}")
            if "gate" in fail:
                raise DeploymentFailed("gate failed")

        @contextmanager
        def check_traffic(rec: Deployment, to: str) -> Iterator[None]:
            yield None

        monkeypatch.setattr(controller_module, "run_migrations", run_migrations)
        monkeypatch.setattr(controller_module, "set_weights", lambda *a: self.calls.append("listener"))
        monkeypatch.setattr(c, "stack", SimpleNamespace(names=SimpleNamespace(artifact_bucket="artifacts")))
        monkeypatch.setattr(c, "_read_outputs", lambda fresh=False: outputs)
        during = {**BEFORE, "green_capacity": 1, "green_version": "1.2.0", "green_weight": 10}
        monkeypatch.setattr(c, "layout", lambda: Layout.from_outputs(during))
        monkeypatch.setattr(c, "_phase", phase)
        monkeypatch.setattr(c, "_fence", lambda: None)
        monkeypatch.setattr(c, "_update", lambda rec, **changes: rec)
        monkeypatch.setattr(c, "_provision", lambda *a: self.calls.append("provision"))
        monkeypatch.setattr(c, "_check_traffic", check_traffic)
        monkeypatch.setattr(c, "_step", step)
        monkeypatch.setattr(c, "_scale_down", lambda *a: self.calls.append("scale-down"))
        monkeypatch.setattr(c, "_apply", lambda variables, **kw: self.calls.append("apply"))
        monkeypatch.setattr(c, "_finish", lambda rec, status, reason: self.calls.append(f"finish {status}"))

    def run(self, phase: str = "lock", step_index: int = -1) -> list[str]:
        self.controller._run(record(phase, step_index), capacity=1, preview_requests=0, probe=None)
        return [c for c in self.calls if not c.startswith("phase ") or "migrate" in c]


def test_a_deploy_expands_right_before_any_traffic_and_contracts_after_the_old_color_is_parked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Recorder(monkeypatch).run() == [
        "provision",
        "migrations 1.2.0 expand",
        "phase migrate-expand: 1.2.0: expanded",
        "step 10",
        "step 100",
        "scale-down",
        "migrations 1.2.0 upgrade",
        "phase migrate-contract: 1.2.0: upgraded",
        "finish succeeded",
    ]


def test_without_a_database_a_deploy_runs_no_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Recorder(monkeypatch, database=False).run() == [
        "provision", "step 10", "step 100", "scale-down", "finish succeeded",
    ]  # fmt: skip


def test_a_resumed_deploy_in_its_contract_phase_contracts_without_shifting_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Recorder(monkeypatch).run(phase="migrate-contract", step_index=1) == [
        "scale-down",
        "migrations 1.2.0 upgrade",
        "phase migrate-contract: 1.2.0: upgraded",
        "finish succeeded",
    ]


def test_a_failed_gate_takes_the_schema_back_to_the_old_release_before_the_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The new release's code downgrades (it ships the revision), to the old release's revision."""
    calls = Recorder(monkeypatch, fail=("gate",)).run()
    assert calls[:3] == ["provision", "migrations 1.2.0 expand", "phase migrate-expand: 1.2.0: expanded"]
    rollback = calls[calls.index("step 10") + 1 :]
    assert rollback[:3] == [
        "migrations 1.2.0 downgrade 0001",
        "phase rollback-migrate: 1.2.0: downgraded",
        "listener",
    ]
    assert rollback[-1] == "finish rolled_back"
    assert "step 100" not in calls


def test_a_failed_expand_rolls_back_and_a_failed_downgrade_does_not_stop_the_rollback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An expand that fails changes nothing (one transaction) and the deploy rolls back before
    any weight moves; a downgrade that fails is said, and the traffic still goes back."""
    calls = Recorder(monkeypatch, fail=("expand",)).run()
    assert calls[:2] == ["provision", "migrations 1.2.0 expand"] and "step 10" not in calls
    assert calls[-1] == "finish rolled_back"
    calls = Recorder(monkeypatch, fail=("gate", "downgrade")).run()
    assert calls.index("migrations 1.2.0 downgrade 0001") < calls.index("listener")
    assert not any(c.startswith("phase rollback-migrate") for c in calls)  # it failed: no detail
    assert calls[-1] == "finish rolled_back"
