"""labkit.ops.db_restore without a database: the figures a snapshot records and how they compare,
the acknowledged writes found missing, the new instance's name, and the choice of restore point on
moto's RDS (in process). test_sandbox_databases.py runs the db-destroyed drill on real PostgreSQL."""

from __future__ import annotations

import json
import re

import pytest

from labkit.errors import DatabaseRestoreError
from labkit.ops.db_restore import (
    FIGURES_TAG,
    MAX_FIGURE_TAGS,
    TableFigures,
    choose_restore_point,
    compare_figures,
    figures_from_tags,
    figures_tags,
    missing_writes,
    restored_identifier,
)
from labkit.ops.drills import all_drills, db_destroyed
from labkit.target import Target

ORDERS = TableFigures(20, "0cc175b9c0f1b6a831c399e269772661")
VERSION = TableFigures(1, "92eb5ffee6ae2fec3ad71c777531578f")
#: RDS's rule for an instance identifier.
IDENTIFIER = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,62}(?<!-)$")


def test_a_snapshots_tags_carry_each_tables_figures_and_nothing_else_is_read_as_figures() -> None:
    tags = figures_tags({"orders": ORDERS, "alembic_version": VERSION})
    assert tags == [
        {"Key": f"{FIGURES_TAG}alembic_version", "Value": f"1:{VERSION.checksum}"},
        {"Key": f"{FIGURES_TAG}orders", "Value": f"20:{ORDERS.checksum}"},
    ]
    assert figures_from_tags([*tags, {"Key": "Environment", "Value": "staging"}]) == {
        "orders": ORDERS,
        "alembic_version": VERSION,
    }
    with pytest.raises(DatabaseRestoreError, match=f"figures of {MAX_FIGURE_TAGS}"):
        figures_tags({f"t{n}": ORDERS for n in range(MAX_FIGURE_TAGS + 1)})


def test_figures_differ_by_rows_checksum_or_a_table_missing_or_new() -> None:
    expected = {"orders": ORDERS, "alembic_version": VERSION}
    assert compare_figures(expected, dict(expected)) == []
    assert compare_figures(expected, {"orders": TableFigures(15, "x"), "extra": ORDERS}) == [
        "alembic_version: missing (1 rows at the restore point)",
        "extra: not at the restore point, 20 rows now",
        "orders: 15 rows, 20 at the restore point",
    ]
    changed = {"orders": TableFigures(20, "another"), "alembic_version": VERSION}
    assert compare_figures(expected, changed) == [
        "orders: 20 rows as at the restore point, but their checksum differs"
    ]


def test_the_writes_missing_are_exactly_the_acknowledged_ones_not_present() -> None:
    assert missing_writes([5, 1, 3, 3], [1, 2, 3]) == [5]
    assert missing_writes([], [1]) == []
    assert missing_writes([1, 2], []) == [1, 2]


@pytest.mark.parametrize(
    ("source", "point", "wanted"),
    [
        ("orders-db", "orders-db-drill-20261203-180000", "orders-db-from-drill-20261203-180000"),
        ("staging-db", "rds:staging-db-2026-12-03-03-10", "staging-db-from-rds-staging-db-2026-12-03-03-10"),
        ("orders-db", "x" * 70, "orders-db-from-" + "x" * 48),  # cut to RDS's 63 characters
        ("db", "Final--Snap_1", "db-from-final-snap-1"),
        ("9db", "pitr-20261203-1800", "db-9db-from-pitr-20261203-1800"),
    ],
)
def test_the_new_instance_is_named_for_its_restore_point_within_rds_rules(
    source: str, point: str, wanted: str
) -> None:
    name = restored_identifier(source, point)
    assert name == wanted
    assert IDENTIFIER.match(name), name
    assert restored_identifier(source, point) == name  # a second run finds the same instance


def create(target: Target, identifier: str) -> None:
    """An instance in moto's RDS. MySQL: the sandbox's mends (applied in process by another unit test)
    keep a PostgreSQL snapshot ``creating`` until a server captures its data, and none runs here."""
    target.client("rds").create_db_instance(
        DBInstanceIdentifier=identifier, Engine="mysql", DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20, DBName="orders", MasterUsername="app_admin", ManageMasterUserPassword=True,
    )  # fmt: skip


def test_the_restore_point_is_the_newest_snapshot_unless_one_or_a_time_is_named(moto_target: Target) -> None:
    rds = moto_target.client("rds")
    create(moto_target, "orders-db")
    with pytest.raises(DatabaseRestoreError, match="no available snapshot") as none:
        choose_restore_point(moto_target, "other-db", instance_exists=True)
    assert "restore_time latest" in str(none.value.hint)
    # RDS takes an automated snapshot of a new instance: a restore point without figures.
    first = choose_restore_point(moto_target, "orders-db", instance_exists=True)
    assert first.name.startswith("rds:orders-db-") and first.figures == {}
    rds.create_db_snapshot(DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="older")
    rds.create_db_snapshot(
        DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="newer", Tags=figures_tags({"orders": ORDERS})
    )
    newest = choose_restore_point(moto_target, "orders-db", instance_exists=True)
    assert (newest.kind, newest.name, newest.figures) == ("snapshot", "newer", {"orders": ORDERS})
    named = choose_restore_point(moto_target, "orders-db", snapshot="older", instance_exists=True)
    assert (named.name, named.figures) == ("older", {})
    with pytest.raises(DatabaseRestoreError, match="no available snapshot nope") as unknown:
        choose_restore_point(moto_target, "orders-db", snapshot="nope", instance_exists=True)
    assert "newer" in str(unknown.value.hint) and "older" in str(unknown.value.hint)

    latest = choose_restore_point(moto_target, "orders-db", restore_time="latest", instance_exists=True)
    assert (latest.kind, latest.name) == ("time", "latest")
    at = choose_restore_point(
        moto_target, "orders-db", restore_time="2026-12-03T19:30:00+01:00", instance_exists=True
    )
    assert at.name == "2026-12-03T18:30:00+00:00"
    with pytest.raises(DatabaseRestoreError, match="does not exist"):
        choose_restore_point(moto_target, "orders-db", restore_time="latest", instance_exists=False)
    with pytest.raises(DatabaseRestoreError, match="Both a snapshot"):
        choose_restore_point(
            moto_target, "orders-db", snapshot="older", restore_time="latest", instance_exists=True
        )


def test_the_sandbox_refuses_a_point_in_time_it_cannot_honour(moto_target: Target) -> None:
    sandbox = Target("sandbox", "us-east-1", endpoint_url="http://127.0.0.1:9")  # refused before any call
    with pytest.raises(DatabaseRestoreError, match="keeps no write-ahead log"):
        choose_restore_point(
            sandbox, "orders-db", restore_time="2026-12-03T18:30:00+00:00", instance_exists=True
        )


def test_the_drill_is_found_with_its_runbook() -> None:
    drill = all_drills()["db-destroyed"]
    assert drill.runbook == "db-restore"
    facts = {"instance": "orders-db", "snapshot": "orders-db-drill-1", "written_before": [1, 2]}
    assert drill.runbook_parameters(facts) == {
        "instance": "orders-db",
        "snapshot": "orders-db-drill-1",
        "acknowledged_ids": [1, 2],
    }


def test_the_drills_check_reads_its_record_only_on_the_target_that_holds_its_restore_point(
    moto_target: Target,
) -> None:
    ok, detail = db_destroyed.writes_restored(moto_target, "staging")
    assert ok and detail == "no db-destroyed injection recorded for staging: nothing to check"
    record = db_destroyed.record_path(moto_target, "staging")
    record.parent.mkdir(parents=True)
    facts = {"snapshot": "orders-db-drill-1", "restored_instance": "orders-db-from-drill-1",
             "written_before": [1, 2], "written_after": [3]}  # fmt: skip
    record.write_text(json.dumps(facts))
    ok, detail = db_destroyed.writes_restored(moto_target, "staging")  # another sandbox's record
    assert ok and "was not on this target" in detail
    create(moto_target, "orders-db")
    moto_target.client("rds").create_db_snapshot(
        DBInstanceIdentifier="orders-db", DBSnapshotIdentifier="orders-db-drill-1"
    )
    assert db_destroyed.writes_restored(moto_target, "staging") == (
        False,
        f"orders-db-from-drill-1, where the last injection's writes belong ({record}), does not exist",
    )
