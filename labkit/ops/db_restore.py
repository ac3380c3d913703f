"""Restore an RDS PostgreSQL instance's data into a new instance (the ``db-restore`` runbook's logic).

The runbook's steps, each a function here:

- :func:`diagnose`: the instance (the environment's ``database`` output unless named), whether it
  still exists, its snapshots, and the restore point (:func:`choose_restore_point`) and the new
  instance's name (:func:`restored_identifier`);
- :func:`actions`: one restore (:func:`restore`), none when the new instance exists already;
  or, when the instance is the environment's own database and it is gone, the restore back into
  service under its own identifier (:mod:`labkit.ops.db_service`: an apply of the instance alone,
  its figures held, an apply of the whole environment, then the fleets' unhealthy instances
  replaced) instead;
- :class:`RestoredDatabase`: the Verify checks, read from the new instance: it serves with its own
  secret's credentials; each table's row count and checksum (:func:`table_figures`) equal the
  figures recorded with the restore point; every acknowledged write id is present.

Which restore point: the newest available snapshot of the instance by default, because it exists
whether or not the instance does (a deleted instance's manual and final snapshots stay) and it is
one named moment the check can be held to. A point in time (``restore_time``: ``latest`` or an ISO
time) restores from the instance's automated backups and needs the instance to exist. The sandbox
keeps no write-ahead log, so there a point-in-time restore copies the instance as it is now; an
earlier time is refused rather than silently ignored.

The figures a snapshot is held to are recorded when :func:`take_restore_point` takes it: one tag per
table, ``labkit:figures:TABLE`` = ``ROWS:MD5``. A snapshot taken otherwise has none; then only the
acknowledged writes are checked and the figures are printed.

The new instance takes the instance's class, subnet group and security groups while it exists; once
it is gone, RDS's defaults (on AWS the default VPC, where the fleets cannot reach it until it is
moved: ``aws rds modify-db-instance --db-subnet-group-name ... --vpc-security-group-ids ...``). The restored
data is read from where this runs: the sandbox's servers are on loopback; on AWS the instance is in
the VPC's isolated subnets and the checks must run from inside the VPC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from labkit.deploy.health import fleets
from labkit.deploy.migrations import environment_database
from labkit.errors import DatabaseRestoreError
from labkit.infra.stack import Stack
from labkit.ops import db_service
from labkit.ops.probes import Check
from labkit.ops.runbook import Action
from labkit.target import Target

#: Tag key prefix of a table's figures on a snapshot: ``labkit:figures:orders`` = ``"20:<md5>"``.
FIGURES_TAG = "labkit:figures:"
#: Tag on a restored instance naming where its data came from.
RESTORED_FROM_TAG = "labkit:restored-from"
#: RDS allows 50 tags on a resource; the figures leave room for the ones the account adds.
MAX_FIGURE_TAGS = 40
#: How long a restore may take until the new instance is available (RDS takes minutes; the sandbox seconds).
RESTORE_TIMEOUT_S = {True: 120.0, False: 3600.0}
#: How long an available instance may refuse connections (its server starting) before the check gives up.
CONNECT_TIMEOUT_S = 60.0
#: Session settings under which a row's text, and so the checksum, is the same on any server.
_STABLE_TEXT = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET bytea_output = 'hex'"
)


@dataclass(frozen=True)
class TableFigures:
    """One table's row count and checksum (md5 over its rows' text, in primary-key order)."""

    rows: int
    checksum: str

    def tag_value(self) -> str:
        return f"{self.rows}:{self.checksum}"

    @classmethod
    def from_tag_value(cls, value: str) -> TableFigures:
        rows, _, checksum = value.partition(":")
        return cls(int(rows), checksum)


Figures = dict[str, TableFigures]


def figures_tags(figures: Mapping[str, TableFigures]) -> list[dict[str, str]]:
    """The snapshot tags that record ``figures``; DatabaseRestoreError past :data:`MAX_FIGURE_TAGS`."""
    if len(figures) > MAX_FIGURE_TAGS:
        raise DatabaseRestoreError(
            f"The database has {len(figures)} tables; a snapshot records the figures of {MAX_FIGURE_TAGS} "
            "at most.",
            hint="Take the snapshot without figures (`aws rds create-db-snapshot`) and check the restore by "
            "acknowledged write ids.",
        )
    return [{"Key": FIGURES_TAG + table, "Value": f.tag_value()} for table, f in sorted(figures.items())]


def figures_from_tags(tags: Iterable[Mapping[str, str]]) -> Figures:
    """The figures recorded in a snapshot's tags (none when it was not taken by labkit)."""
    return {
        t["Key"].removeprefix(FIGURES_TAG): TableFigures.from_tag_value(t["Value"])
        for t in tags
        if t["Key"].startswith(FIGURES_TAG)
    }


def compare_figures(expected: Mapping[str, TableFigures], found: Mapping[str, TableFigures]) -> list[str]:
    """What differs between two sets of figures, one line per table (empty: they are equal)."""
    lines = []
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want is None:
            lines.append(f"{table}: not at the restore point, {got.rows if got else 0} rows now")
        elif got is None:
            lines.append(f"{table}: missing ({want.rows} rows at the restore point)")
        elif want.rows != got.rows:
            lines.append(f"{table}: {got.rows} rows, {want.rows} at the restore point")
        elif want.checksum != got.checksum:
            lines.append(f"{table}: {got.rows} rows as at the restore point, but their checksum differs")
    return lines


def missing_writes(acknowledged: Iterable[int], present: Iterable[int]) -> list[int]:
    """The acknowledged write ids that are not present, in order."""
    there = set(present)
    return sorted({int(i) for i in acknowledged} - there)


def restored_identifier(source: str, point: str) -> str:
    """A valid RDS identifier for the instance restored from ``source`` at ``point`` (a snapshot id
    or a time label): the same for the same restore point, so a second run finds it."""
    if point.lower().startswith(f"{source.lower()}-"):  # snapshot ids often start with the instance's
        point = point[len(source) + 1 :]
    raw = f"{source}-from-{point}".lower()
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw))[:63].strip("-")
    return name if name[:1].isalpha() else f"db-{name}"[:63].rstrip("-")


# -- reading a database --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where an instance serves and the credentials its RDS-managed secret holds."""

    identifier: str
    host: str
    port: int
    dbname: str
    username: str
    password: str = field(repr=False)

    def connect(self, timeout_s: int = 3) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host, port=self.port, dbname=self.dbname, user=self.username,
            password=self.password, connect_timeout=timeout_s, autocommit=True,
        )  # fmt: skip


def describe_instance(target: Target, identifier: str) -> dict[str, Any] | None:
    """The instance as the RDS API describes it, or None when there is none."""
    try:
        found = target.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return None
        raise
    instances: list[dict[str, Any]] = found["DBInstances"]
    return instances[0] if instances else None


def endpoint(target: Target, identifier: str) -> Endpoint:
    """The instance's endpoint and master credentials (from its RDS-managed secret)."""
    import json

    db = describe_instance(target, identifier)
    if db is None or "Endpoint" not in db:
        raise DatabaseRestoreError(
            f"The RDS instance {identifier} does not exist or has no endpoint yet.",
            hint="`aws rds describe-db-instances` lists the instances; wait until it is available.",
        )
    if "MasterUserSecret" not in db:
        raise DatabaseRestoreError(
            f"{identifier}'s master password is not managed by RDS, so there is no secret to read it from.",
            hint="Turn it on: `aws rds modify-db-instance --db-instance-identifier "
            f"{identifier} --manage-master-user-password --apply-immediately`.",
        )
    secret = target.client("secretsmanager").get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])
    credentials = json.loads(secret["SecretString"])
    return Endpoint(
        identifier=identifier,
        host=str(db["Endpoint"]["Address"]),
        port=int(db["Endpoint"]["Port"]),
        dbname=str(db.get("DBName") or "postgres"),
        username=str(credentials["username"]),
        password=str(credentials["password"]),
    )


def table_figures(conn: psycopg.Connection[Any]) -> Figures:
    """Every table of schema ``public``: its row count and the md5 of its rows' text joined in
    primary-key order (whole-row order for a table without one)."""
    conn.execute(_STABLE_TEXT)
    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
    ]
    figures: Figures = {}
    for table in tables:
        keys = [
            str(row[0])
            for row in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                (sql.Identifier("public", table).as_string(conn),),
            ).fetchall()
        ]
        order = (
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in keys)
            if keys
            else sql.SQL("t::text")
        )
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), '')) "
            "FROM {table} AS t"
        ).format(order=order, table=sql.Identifier("public", table))
        row = conn.execute(query).fetchone()
        assert row is not None  # an aggregate always returns a row
        figures[table] = TableFigures(int(row[0]), str(row[1]))
    return figures


def present_ids(conn: psycopg.Connection[Any], table: str, ids: Iterable[int]) -> set[int]:
    """Which of ``ids`` are in ``table``'s ``id`` column."""
    query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier("public", table))
    return {int(row[0]) for row in conn.execute(query, ([int(i) for i in ids],)).fetchall()}


# -- the restore point ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePoint:
    """A snapshot, or a point in time of a (live) instance, and the figures recorded with it."""

    kind: Literal["snapshot", "time"]
    #: The snapshot id, or ``latest`` / an ISO time.
    name: str
    created: str = ""
    figures: Figures = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "time":
            return "the latest restorable time" if self.name == "latest" else f"the point in time {self.name}"
        recorded = f", figures of {len(self.figures)} table(s) recorded" if self.figures else ", no figures"
        return f"snapshot {self.name} (taken {self.created or '?'}{recorded})"


def snapshots_of(target: Target, instance: str) -> list[dict[str, Any]]:
    """The instance's available snapshots (manual, automated, final), newest first."""
    paginator = target.client("rds").get_paginator("describe_db_snapshots")
    pages = paginator.paginate(DBInstanceIdentifier=instance)
    found = [s for page in pages for s in page["DBSnapshots"] if s.get("Status") == "available"]
    never = datetime.min.replace(tzinfo=UTC)  # one still being created has no time yet
    return sorted(found, key=lambda s: s.get("SnapshotCreateTime") or never, reverse=True)


def snapshots_named(target: Target, snapshot: str) -> list[dict[str, Any]]:
    """The snapshot called ``snapshot`` (one, or none when there is no such snapshot)."""
    try:
        found = target.client("rds").describe_db_snapshots(DBSnapshotIdentifier=snapshot)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBSnapshotNotFound":
            return []
        raise
    snapshots: list[dict[str, Any]] = found["DBSnapshots"]
    return snapshots


def _point_from_snapshot(target: Target, snapshot: Mapping[str, Any]) -> RestorePoint:
    tags = snapshot.get("TagList")
    if tags is None:
        tags = target.client("rds").list_tags_for_resource(ResourceName=snapshot["DBSnapshotArn"])["TagList"]
    return RestorePoint(
        "snapshot", str(snapshot["DBSnapshotIdentifier"]), str(snapshot.get("SnapshotCreateTime", "")),
        figures_from_tags(tags),
    )  # fmt: skip


def choose_restore_point(
    target: Target, instance: str, *, snapshot: str = "", restore_time: str = "", instance_exists: bool
) -> RestorePoint:
    """The snapshot named, the point in time asked for, or by default the newest snapshot of ``instance``."""
    if snapshot and restore_time:
        raise DatabaseRestoreError(
            f"Both a snapshot ({snapshot}) and a point in time ({restore_time}) were given.",
            hint="Give one: -p snapshot ID, or -p restore_time latest (or an ISO time).",
        )
    if restore_time:
        return _time_point(target, instance, restore_time, instance_exists)
    found = snapshots_of(target, instance)
    if snapshot:
        named = [s for s in found if s["DBSnapshotIdentifier"] == snapshot]
        if not named:
            raise DatabaseRestoreError(
                f"{instance} has no available snapshot {snapshot}.",
                hint=f"Its snapshots: {', '.join(s['DBSnapshotIdentifier'] for s in found) or 'none'}.",
            )
        return _point_from_snapshot(target, named[0])
    if not found:
        raise DatabaseRestoreError(
            f"{instance} has no available snapshot to restore from.",
            hint="While the instance exists, restore to a point in time: -p restore_time latest.",
        )
    return _point_from_snapshot(target, found[0])


def _time_point(target: Target, instance: str, restore_time: str, instance_exists: bool) -> RestorePoint:
    if not instance_exists:
        raise DatabaseRestoreError(
            f"{instance} does not exist, so it has no point in time to restore.",
            hint="Restore from one of its snapshots (the default: its newest; or -p snapshot ID).",
        )
    if restore_time == "latest":
        return RestorePoint("time", "latest")
    try:
        moment = datetime.fromisoformat(restore_time)
    except ValueError:
        raise DatabaseRestoreError(
            f"restore_time is {restore_time!r}.",
            hint="Give 'latest' or an ISO time with its zone, e.g. 2026-12-03T18:30:00+00:00.",
        ) from None
    if target.is_sandbox:
        raise DatabaseRestoreError(
            f"The sandbox cannot restore {instance} to {restore_time}: it keeps no write-ahead log, so a "
            "point-in-time restore there copies the instance as it is now.",
            hint="On the sandbox restore from a snapshot, or to -p restore_time latest.",
        )
    return RestorePoint("time", moment.astimezone(UTC).isoformat())


# -- the runbook's sections ----------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """The instance to restore, where it stands, the restore point and the new instance."""

    instance: str
    #: The instance's status, or None when it is gone.
    instance_status: str | None
    point: RestorePoint
    new_instance: str
    #: The new instance's status, or None when it does not exist yet.
    new_status: str | None
    snapshots: tuple[str, ...]
    #: Back into service: the environment's own database, gone, restored under its own identifier
    #: by Terraform (or already restored so from this restore point).
    in_place: bool = False

    def __str__(self) -> str:  # what the runbook prints and records
        return self.describe()

    def describe(self) -> str:
        state = self.instance_status or "gone (deleted)"
        new = f"exists ({self.new_status})" if self.new_status else "does not exist yet"
        where = (
            "the environment's database, back under its own identifier" if self.in_place else "new instance"
        )
        return (
            f"{self.instance}: {state}; {len(self.snapshots)} snapshot(s); restore point: "
            f"{self.point.describe()}; {where} {self.new_instance}: {new}"
        )


def diagnose(
    stack: Stack,
    *,
    instance: str = "",
    snapshot: str = "",
    restore_time: str = "",
    new_instance: str = "",
) -> Diagnosis:
    """Read (only) what the restore needs: see the module's docstring."""
    target = stack.target
    source = instance or environment_database(stack).identifier
    described = describe_instance(target, source)
    point = choose_restore_point(
        target, source, snapshot=snapshot, restore_time=restore_time, instance_exists=described is not None
    )
    in_place = _in_place(stack, source, described, point, new_instance)
    label = point.name if point.kind == "snapshot" else f"pitr-{_time_label(point.name)}"
    name = source if in_place else new_instance or restored_identifier(source, label)
    if name == source and not in_place:
        raise DatabaseRestoreError(
            f"The new instance's name is the instance's own ({source}).",
            hint="A restore makes a new instance: give another new_instance.",
        )
    new = describe_instance(target, name)
    return Diagnosis(
        instance=source,
        instance_status=None if described is None else str(described.get("DBInstanceStatus")),
        point=point,
        new_instance=name,
        new_status=None if new is None else str(new.get("DBInstanceStatus")),
        snapshots=tuple(str(s["DBSnapshotIdentifier"]) for s in snapshots_of(target, source)),
        in_place=in_place,
    )


def _in_place(
    stack: Stack, source: str, described: Mapping[str, Any] | None, point: RestorePoint, new_instance: str
) -> bool:
    """Whether the restore puts ``source`` back into service: it is the environment's database, no
    other new instance is asked for, the restore point is a snapshot, and the instance is gone (or
    Terraform already created it from that snapshot)."""
    if new_instance not in ("", source) or point.kind != "snapshot":
        return False
    output = stack.outputs().get("database")
    if not isinstance(output, Mapping) or output.get("identifier") != source:
        return False
    return described is None or db_service.restored_from(stack) == point.name


def _time_label(name: str) -> str:
    moment = datetime.now(UTC) if name == "latest" else datetime.fromisoformat(name)
    return moment.strftime("%Y%m%d-%H%M")


def actions(stack: Stack, diagnosis: Diagnosis) -> list[Action]:
    """One restore into the new instance; none when it exists already. Back into service
    (``in_place``): the instance's restore, unless done; its figures held and the fleets connected,
    unless the environment's last whole apply saw its secret; then the fleets' roll, while any of
    their instances is unhealthy."""
    target = stack.target
    if diagnosis.in_place:
        return _into_service_actions(stack, diagnosis)
    if diagnosis.new_status is not None:
        return []
    return [
        Action(
            f"restore {diagnosis.point.describe()} of {diagnosis.instance} into a new instance "
            f"{diagnosis.new_instance}, and wait until it serves",
            lambda: restore(target, diagnosis),
        )
    ]


def _into_service_actions(stack: Stack, diagnosis: Diagnosis) -> list[Action]:
    say = stack.reporter or (lambda _line: None)
    restoring = diagnosis.new_status is None
    done: list[Action] = []
    if restoring:
        snapshot = diagnosis.point.name
        done.append(
            Action(
                f"restore {diagnosis.point.describe()} into {stack.env}'s database {diagnosis.instance}, "
                f"back under its own identifier: apply {stack.env}'s database instance alone with "
                f"database_snapshot_identifier={snapshot} (a new secret)",
                lambda: db_service.restore_database(stack, snapshot),
            )
        )
    if restoring or not db_service.fleets_connected(stack):
        done.append(
            Action(
                f"hold {diagnosis.instance}'s tables to the restore point's figures while nothing writes "
                f"to it, then connect the fleets: apply {stack.env} (the secret's rotation; the fleets' "
                "policy and launch templates take the new secret)",
                lambda: _hold_then_connect(stack, diagnosis),
            )
        )
    failing = sum(len(fleet.check(stack.target).unhealthy) for fleet in fleets(stack.outputs()))
    if done or failing:
        done.append(
            Action(
                "replace the fleets' unhealthy instances (those started before that apply hold the "
                "deleted instance's secret) until every fleet is healthy",
                lambda: db_service.roll_fleets(stack, say),
            )
        )
    return done


def _hold_then_connect(stack: Stack, diagnosis: Diagnosis) -> str:
    """The restored data must be the restore point's before the app may write to it: a mismatch
    stops the runbook with the fleets still on the deleted instance's settings."""
    wait_serving(stack.target, diagnosis.instance)
    check = RestoredDatabase(stack.target, diagnosis)
    try:
        ok, detail = check.figures_match()
    finally:
        check.close()
    if not ok:
        raise DatabaseRestoreError(
            f"{diagnosis.instance} was restored from {diagnosis.point.describe()}, but its data is not "
            f"the restore point's: {detail}. The fleets were not connected to it.",
            hint="Restore another snapshot into a new instance beside it to compare (-p new_instance NAME, "
            "-p snapshot ID; `aws rds describe-db-snapshots` lists them).",
        )
    return f"{detail}; {db_service.connect_fleets(stack)}"


def restore(target: Target, diagnosis: Diagnosis, *, timeout_s: float | None = None) -> str:
    """Restore into the new instance (the instance's class, subnet group and security groups when
    it still exists; the master password managed by RDS), then wait until it serves."""
    rds = target.client("rds")
    source = describe_instance(target, diagnosis.instance)
    settings: dict[str, Any] = {
        "ManageMasterUserPassword": True,
        "Tags": [{"Key": RESTORED_FROM_TAG, "Value": f"{diagnosis.instance} {diagnosis.point.name}"[:256]}],
    }
    if source is not None:
        settings["DBInstanceClass"] = source["DBInstanceClass"]
        if group := source.get("DBSubnetGroup", {}).get("DBSubnetGroupName"):
            settings["DBSubnetGroupName"] = group
        if groups := [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]:
            settings["VpcSecurityGroupIds"] = groups
    point = diagnosis.point
    if point.kind == "snapshot":
        rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=diagnosis.new_instance, DBSnapshotIdentifier=point.name, **settings
        )
    else:
        when: dict[str, Any] = (
            {"UseLatestRestorableTime": True}
            if point.name == "latest"
            else {"RestoreTime": datetime.fromisoformat(point.name)}
        )
        rds.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier=diagnosis.instance,
            TargetDBInstanceIdentifier=diagnosis.new_instance,
            **when,
            **settings,
        )
    wait_serving(target, diagnosis.new_instance, timeout_s)
    return f"{diagnosis.new_instance} serves"


def wait_serving(target: Target, identifier: str, timeout_s: float | None = None) -> Endpoint:
    """Wait until the instance is ``available``, then until it accepts its secret's credentials
    (at most :data:`CONNECT_TIMEOUT_S` more: a database this machine cannot reach never will)."""
    limit = RESTORE_TIMEOUT_S[target.is_sandbox] if timeout_s is None else timeout_s
    deadline, pause = time.monotonic() + limit, 0.5 if target.is_sandbox else 15.0
    last, available_at = "", None
    while time.monotonic() < deadline:
        db = describe_instance(target, identifier)
        status = None if db is None else str(db.get("DBInstanceStatus"))
        if status != "available":
            last = f"status {status}"
        else:
            available_at = available_at or time.monotonic()
            try:
                found = endpoint(target, identifier)
                found.connect().close()
                return found
            except psycopg.OperationalError as exc:  # its server still starting, or out of reach
                last = f"available, but: {str(exc).strip()[:200]}"
                if time.monotonic() - available_at > CONNECT_TIMEOUT_S:
                    raise DatabaseRestoreError(
                        f"{identifier} is available but refused or did not answer for "
                        f"{CONNECT_TIMEOUT_S:g} s: {last}",
                        hint="On AWS run the runbook from inside the VPC (the instance is in isolated "
                        "subnets); run it again there: it finds the instance and only verifies.",
                    ) from exc
        time.sleep(min(pause, 2.0) if available_at else pause)
    raise DatabaseRestoreError(
        f"{identifier} was not available within {limit:g} s (last: {last}).",
        hint="Look at the instance's events (`aws rds describe-events --source-identifier "
        f"{identifier}`; on the sandbox, `labkit sandbox status`), then run the runbook again: it "
        "finds the instance and only verifies.",
    )


class RestoredDatabase:
    """The Verify checks on the new instance, read once from it (:meth:`serves` reads)."""

    def __init__(self, target: Target, diagnosis: Diagnosis) -> None:
        self.target = target
        self.diagnosis = diagnosis
        self.figures: Figures | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def serves(self) -> Check:
        """It accepts its own secret's credentials; reads every table's figures."""
        found = endpoint(self.target, self.diagnosis.new_instance)
        self._conn = found.connect()
        self.figures = table_figures(self._conn)
        rows = ", ".join(f"{t} {f.rows}" for t, f in self.figures.items()) or "no tables"
        return True, f"{found.host}:{found.port}/{found.dbname} as {found.username}; rows: {rows}"

    def figures_match(self) -> Check:
        """Every table's row count and checksum equal the restore point's recorded figures."""
        figures = self._read()
        expected = self.diagnosis.point.figures
        if not expected:
            return True, f"no figures recorded with {self.diagnosis.point.describe()}: nothing to compare"
        wrong = compare_figures(expected, figures)
        if wrong:
            return False, "; ".join(wrong)
        return True, f"{len(expected)} table(s): row counts and checksums as at the restore point"

    def writes_present(self, acknowledged: Iterable[int], table: str = "orders") -> Check:
        """Every acknowledged write id is a row of ``table``."""
        wanted = sorted({int(i) for i in acknowledged})
        if not wanted:
            return True, "no acknowledged write ids given: nothing to compare"
        self._read()
        assert self._conn is not None
        missing = missing_writes(wanted, present_ids(self._conn, table, wanted))
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            return False, f"{len(missing)} of {len(wanted)} acknowledged writes missing from {table}: {shown}"
        return True, f"all {len(wanted)} acknowledged writes present in {table}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(self) -> Figures:
        if self.figures is None:
            self.serves()
        assert self.figures is not None
        return self.figures


# -- taking a restore point (the drill; a person before a risky change) --------------------------


def take_restore_point(
    target: Target, instance: str, snapshot: str, *, timeout_s: float = 600.0
) -> RestorePoint:
    """Snapshot ``instance`` with its tables' figures read just before as tags. Take it while
    nothing writes: a write between the reading and the snapshot would make the figures wrong."""
    with endpoint(target, instance).connect() as conn:
        figures = table_figures(conn)
    rds = target.client("rds")
    taken = rds.create_db_snapshot(
        DBInstanceIdentifier=instance, DBSnapshotIdentifier=snapshot, Tags=figures_tags(figures)
    )["DBSnapshot"]
    deadline = time.monotonic() + timeout_s
    while str(taken.get("Status")) != "available":
        if time.monotonic() > deadline:
            raise DatabaseRestoreError(
                f"Snapshot {snapshot} of {instance} was not available within {timeout_s:g} s.",
                hint="`aws rds describe-db-snapshots` shows its progress; restore from it once available.",
            )
        time.sleep(0.5 if target.is_sandbox else 15.0)
        taken = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"][0]
    return RestorePoint("snapshot", snapshot, str(taken.get("SnapshotCreateTime", "")), figures)
