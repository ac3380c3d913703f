"""Drill ``db-destroyed``: the environment's database instance deleted, without a final snapshot,
after a restore point was taken and while orders were being written.

The injection writes orders into the instance as the app does (one committed ``INSERT`` each, its
id returned: an acknowledged write), takes a restore point (:func:`labkit.ops.db_restore.take_restore_point`:
a snapshot with every table's row count and checksum), writes more orders, then deletes the instance
with ``SkipFinalSnapshot``, as a clean-up script or a person in the wrong account would. The
``db-restore`` runbook restores the snapshot and verifies it: the environment's own database back
into service under its identifier (Terraform's applies, the fleets rolled onto the new secret), an
instance named with ``-p instance`` into a new instance beside it.

The drill's own record (:func:`record_path`, in LABKIT_HOME: the ids written before and after the
restore point, and the instance the runbook restores into) is what its check reads; the check reads
the ids in the restored instance itself. Every write acknowledged before the restore point must be
there; those after it are the restore point's loss, reported and not restored. A record whose
restore point is not on the target (a sandbox since rebuilt) is not this target's and is ignored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from labkit.deploy.migrations import environment_database
from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.ops import db_restore, db_service
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.settings import labkit_home
from labkit.target import Target

#: The app's table and the release the drill's rows name.
TABLE = "orders"
WRITTEN_BY = "drill"


def record_path(target: Target, environment: str) -> Path:
    """Where the last injection into ``environment`` on ``target`` is recorded: in LABKIT_HOME,
    beside the target's Terraform working files, so two sandboxes never share it."""
    return labkit_home() / "drills" / "db-destroyed" / target.name / f"{environment}.json"


def write_orders(where: db_restore.Endpoint, count: int, label: str) -> list[int]:
    """Write ``count`` orders as the app does, one committed INSERT each; their ids, in order."""
    with where.connect() as conn:
        columns = {
            str(row[0])
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s",
                (TABLE,),
            ).fetchall()
        }
        if not columns:
            raise DrillError(
                f"{where.identifier} has no {TABLE} table to write to.",
                hint="Migrate its database first: `labkit db migrate ENV` (or the app's `python -m "
                "app.migrations upgrade`).",
            )
        item = "item" if "item" in columns else "product"  # the contract step (0003) renames it
        insert = sql.SQL("INSERT INTO {} ({}, release_version) VALUES (%s, %s) RETURNING id").format(
            sql.Identifier("public", TABLE), sql.Identifier(item)
        )
        ids = []
        for n in range(count):
            row = conn.execute(insert, (f"{label}-{n}", WRITTEN_BY)).fetchone()  # autocommit: acknowledged
            assert row is not None  # RETURNING gives the row
            ids.append(int(row[0]))
    return ids


def inject(
    target: Target, environment: str, *, instance: str = "", writes: int = 20, later_writes: int = 5
) -> dict[str, Any]:
    """Write, take the restore point, write more, delete the instance; what it wrote and did."""
    stack = Stack(environment, target, reporter=None)
    outputs = stack.outputs()
    own = outputs.get("database")
    own_identifier = own.get("identifier") if isinstance(own, dict) else None
    source = instance or environment_database(stack, outputs).identifier
    described = db_restore.describe_instance(target, source)
    if described is None:
        raise DrillError(f"There is no RDS instance {source}.", hint="Name one: -p instance ID.")
    if described.get("DeletionProtection"):
        raise DrillError(
            f"{source} has deletion protection on: the drill deletes only an unprotected instance.",
            hint="Run the drill on staging's database, or on an instance of its own (-p instance ID).",
        )
    where = db_restore.endpoint(target, source)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    before = write_orders(where, writes, f"before-{stamp}")
    point = db_restore.take_restore_point(target, source, f"{source}-drill-{stamp}")
    after = write_orders(where, later_writes, f"after-{stamp}")
    target.client("rds").delete_db_instance(
        DBInstanceIdentifier=source, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
    )
    facts: dict[str, Any] = {
        "instance": source,
        "snapshot": point.name,
        # The environment's own database comes back under its identifier (db-restore's in-place path).
        "restored_instance": (
            source if source == own_identifier else db_restore.restored_identifier(source, point.name)
        ),
        "written_before": before,
        "written_after": after,
        "figures": {t: f.tag_value() for t, f in point.figures.items()},
        "deleted": source,
    }
    path = record_path(target, environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts, indent=2) + "\n")
    return {**facts, "record": str(path)}


def writes_restored(target: Target, environment: str) -> Check:
    """Every write the last injection acknowledged before its restore point is in the restored
    instance (read there); the later ones are counted as the restore point's loss."""
    path = record_path(target, environment)
    if not path.exists():
        return True, f"no db-destroyed injection recorded for {environment}: nothing to check"
    facts = json.loads(path.read_text())
    if not db_restore.snapshots_named(target, str(facts["snapshot"])):
        # A record of another target (another sandbox's, a test's): its restore point is not here.
        return True, f"the last recorded injection ({path}) was not on this target: nothing to check"
    restored = str(facts["restored_instance"])
    if db_restore.describe_instance(target, restored) is None:
        return False, f"{restored}, where the last injection's writes belong ({path}), does not exist"
    try:
        with db_restore.endpoint(target, restored).connect() as conn:
            # The drill's own rows only: after a restore the id sequence is back at the restore
            # point, so the app's next writes take the ids of the writes the restore lost.
            query = sql.SQL("SELECT id FROM {} WHERE release_version = %s").format(
                sql.Identifier("public", TABLE)
            )
            present = {int(row[0]) for row in conn.execute(query, (WRITTEN_BY,)).fetchall()}
    except psycopg.Error as exc:
        return False, f"{restored} cannot be read: {str(exc).strip()[:200]}"
    before, after = facts["written_before"], facts["written_after"]
    missing = db_restore.missing_writes(before, present)
    lost = len(db_restore.missing_writes(after, present))
    if missing:
        return (
            False,
            f"{len(missing)} of {len(before)} writes before the restore point missing: {missing[:20]}",
        )
    return True, (
        f"all {len(before)} writes acknowledged before the restore point are in {restored}; "
        f"{lost} of {len(after)} written after it are not (the restore point's loss)"
    )


def _runbook_parameters(facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "instance": facts["instance"],
        "snapshot": facts["snapshot"],
        "acknowledged_ids": facts["written_before"],
    }


DRILL = Drill(
    name="db-destroyed",
    summary="the database instance deleted without a final snapshot, after a restore point",
    inject=inject,
    runbook="db-restore",
    checks={"writes-restored": writes_restored, "orders-through-alb": db_service.orders_through_alb},
    runbook_parameters=_runbook_parameters,
    # Not ledger-consistent: the drill deploys nothing. A plan with no changes proves that the
    # restored instance is the one the environment's state and code describe.
    steady_state=("alb-serves", "no-change-plan"),
)
