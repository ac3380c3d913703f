"""When db-restore puts the environment's database back into service (labkit.ops.db_service), and
what its plan then holds, on moto's RDS in process with the environment's state faked.
test_sandbox_databases.py runs it for real: the db-destroyed drill on a staging built by Terraform."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.deploy.health import Fleet, fleets
from labkit.infra.stack import Stack
from labkit.ops import db_restore, db_service
from tests.unit.test_db_restore import create

SOURCE = "bglab-staging-db"
SNAPSHOT = "bglab-staging-db-drill-1"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1-AbCdEf"


def staging(
    monkeypatch: pytest.MonkeyPatch,
    target: Any,
    *,
    database: str | None = SOURCE,
    restored_from: str | None = None,
    connected_secret: str = SECRET,
) -> Stack:
    """staging on ``target`` as its state would describe it: its database ``database`` (None: none),
    created from ``restored_from``, whose secret the state's instance has as ``connected_secret``
    (another than the outputs' SECRET: the last apply was the database module's alone), and no
    fleet with capacity."""
    outputs: dict[str, Any] = {"deployment": {"blue_capacity": 0, "green_capacity": 0}}
    if database is not None:
        outputs["database"] = {
            "identifier": database, "address": "127.0.0.1", "port": 5432, "database_name": "app",
            "master_user_secret_arn": SECRET,
        }  # fmt: skip
    attributes = {
        "identifier": database, "snapshot_identifier": restored_from,
        "master_user_secret": [{"secret_arn": connected_secret}],
    }  # fmt: skip
    monkeypatch.setattr(Stack, "outputs", lambda self: outputs)
    monkeypatch.setattr(Stack, "resources", lambda self: [db_service.INSTANCE_ADDRESS] if database else [])
    monkeypatch.setattr(Stack, "state_attributes", lambda self, address: attributes)
    return Stack("staging", target, reporter=None)


def snapshot_then_delete(target: Any) -> None:
    rds = target.client("rds")
    create(target, SOURCE)
    rds.create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=SNAPSHOT)
    rds.delete_db_instance(DBInstanceIdentifier=SOURCE, SkipFinalSnapshot=True)


def test_the_environments_deleted_database_comes_back_under_its_own_identifier(
    moto_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot_then_delete(moto_target)
    stack = staging(monkeypatch, moto_target)
    diagnosis = db_restore.diagnose(stack, snapshot=SNAPSHOT)
    assert diagnosis.in_place and diagnosis.new_instance == SOURCE and diagnosis.new_status is None
    assert "back under its own identifier" in diagnosis.describe()
    restore, connect, roll = db_restore.actions(stack, diagnosis)
    assert f"apply staging's database instance alone with database_snapshot_identifier={SNAPSHOT}" in (
        restore.description
    )
    assert connect.description.startswith(f"hold {SOURCE}'s tables to the restore point's figures")
    assert roll.description.startswith("replace the fleets' unhealthy instances")


def test_a_second_run_after_the_restore_has_nothing_to_restore(
    moto_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance exists again, and the state says Terraform created it from the restore point:
    still in place (verify it), with nothing to do while no fleet has an unhealthy instance."""
    create(moto_target, SOURCE)
    moto_target.client("rds").create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=SNAPSHOT)
    stack = staging(monkeypatch, moto_target, restored_from=SNAPSHOT)
    diagnosis = db_restore.diagnose(stack, snapshot=SNAPSHOT)
    assert diagnosis.in_place and diagnosis.new_instance == SOURCE and diagnosis.new_status == "available"
    assert db_restore.actions(stack, diagnosis) == []


def test_a_run_stopped_before_the_fleets_were_connected_holds_the_data_then_connects_them(
    moto_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restored by an earlier run, which stopped before its whole apply (the outputs still name
    the deleted instance's secret): hold the figures, connect the fleets, roll them."""
    create(moto_target, SOURCE)
    moto_target.client("rds").create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=SNAPSHOT)
    stack = staging(monkeypatch, moto_target, restored_from=SNAPSHOT, connected_secret=f"{SECRET}-new")
    diagnosis = db_restore.diagnose(stack, snapshot=SNAPSHOT)
    connect, roll = db_restore.actions(stack, diagnosis)
    assert "then connect the fleets: apply staging" in connect.description
    assert roll.description.startswith("replace the fleets' unhealthy instances")


@pytest.mark.parametrize(
    ("case", "database", "new_instance"),
    [
        ("the live instance: a copy beside it", SOURCE, ""),
        ("another new instance asked for", SOURCE, "orders-copy"),
        ("an instance the environment does not use", "another-db", ""),
        ("an environment without a database", None, ""),
    ],
)
def test_otherwise_the_restore_goes_into_a_new_instance_beside_it(
    moto_target: Any, monkeypatch: pytest.MonkeyPatch, case: str, database: str | None, new_instance: str
) -> None:
    if case.startswith("the live instance"):
        create(moto_target, SOURCE)
        moto_target.client("rds").create_db_snapshot(
            DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=SNAPSHOT
        )
    else:
        snapshot_then_delete(moto_target)
    stack = staging(monkeypatch, moto_target, database=database)
    diagnosis = db_restore.diagnose(stack, instance=SOURCE, snapshot=SNAPSHOT, new_instance=new_instance)
    assert not diagnosis.in_place, case
    assert diagnosis.new_instance == (new_instance or db_restore.restored_identifier(SOURCE, SNAPSHOT))
    (restore,) = db_restore.actions(stack, diagnosis)
    assert restore.description.endswith(
        f"into a new instance {diagnosis.new_instance}, and wait until it serves"
    )


def test_only_colors_with_capacity_are_rolled() -> None:
    outputs = {
        "deployment": {"blue_capacity": 2, "green_capacity": 0},
        "blue_asg_name": "bglab-staging-blue-1.0.0", "blue_target_group_arn": "arn:blue",
        "green_asg_name": "bglab-staging-green-1.0.0", "green_target_group_arn": "arn:green",
    }  # fmt: skip
    assert fleets(outputs) == [Fleet("blue", "bglab-staging-blue-1.0.0", "arn:blue", 2)]
    assert fleets({}) == []


def test_an_environment_without_a_database_has_no_orders_to_check(
    moto_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging(monkeypatch, moto_target, database=None)
    assert db_service.orders_through_alb(moto_target, "staging") == (
        True,
        "staging has no database: nothing to write",
    )
