"""Issue 15 item 2: the sandbox serves each RDS PostgreSQL instance as a real PostgreSQL 16.

Created, stopped, started and deleted through the RDS API as a client (Terraform, the console)
would; connected to with the endpoint the RDS API gives and the credentials in the instance's
RDS-managed secret, as the app will; its data kept across a stop and across a restart of the
sandbox. Then the db-destroyed drill and the db-restore runbook, a release's migrations on an
instance (item 4, `labkit db`), and the composition's fleet on its database (item 3). The sandbox
here is the module's own, in its own folder (it is restarted).
"""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from chaoslib.experiment import run_experiment
from sqlalchemy import create_engine, text

from app.migrations import history, upgrade
from app.release import FIRST_SCHEMA
from labkit import sandbox as sandbox_service
from labkit.deploy.ledger import ensure_table
from labkit.deploy.migrations import EnvironmentDatabase, run_migrations
from labkit.errors import MigrationError
from labkit.infra.stack import Stack, StackNames
from labkit.infra.terraform import Terraform
from labkit.ops import db_restore
from labkit.ops import drill as drill_runner
from labkit.ops.drills import db_destroyed
from labkit.sandbox import target as sandbox_target
from labkit.sandbox.client.paths import sandbox_paths
from labkit.settings import terraform_dir
from tests.conftest import target_states, upload_artifact, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("db-sandbox")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_SANDBOX_HOME", str(root))
        sandbox_service.up()
        try:
            yield root
        finally:
            sandbox_service.down()


def endpoint_and_secret(rds: Any, identifier: str) -> tuple[str, int, dict[str, str]]:
    db = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    secret = (
        sandbox_target()
        .client("secretsmanager")
        .get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])
    )
    return db["Endpoint"]["Address"], int(db["Endpoint"]["Port"]), json.loads(secret["SecretString"])


def connect(
    host: str, port: int, user: str, password: str, dbname: str = "orders"
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=3
    )


def connects(host: str, port: int, credentials: dict[str, str]) -> bool:
    try:
        connect(host, port, credentials["username"], credentials["password"]).close()
    except psycopg.OperationalError:
        return False
    return True


def create(rds: Any, identifier: str, **credentials: Any) -> None:
    """A PostgreSQL instance with database ``orders``; its master password managed by RDS unless
    ``credentials`` give it."""
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        DBName="orders",
        **(credentials or {"MasterUsername": "app_admin", "ManageMasterUserPassword": True}),
    )


def database_state(identifier: str) -> str:
    found = [d for d in sandbox_service.status().databases if d["identifier"] == identifier]
    return str(found[0]["state"]) if found else "absent"


def test_an_rds_instance_is_a_postgresql_that_keeps_its_data_through_stop_and_restart(home: Path) -> None:
    rds = sandbox_target().client("rds")
    create(rds, "orders-db")
    host, port, credentials = endpoint_and_secret(rds, "orders-db")
    assert host == "127.0.0.1" and port != 5432
    assert credentials["username"] == "app_admin" and len(credentials["password"]) >= 24
    wait_for(
        "the server accepts the secret's credentials", lambda: connects(host, port, credentials), timeout_s=60
    )
    assert database_state("orders-db") == "running"

    with connect(host, port, credentials["username"], credentials["password"]) as db:
        version = db.execute("SHOW server_version").fetchone()
        assert version is not None and str(version[0]).startswith("16.")
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        db.execute("INSERT INTO orders (item) VALUES ('kettle'), ('teapot')")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(host, port, credentials["username"], "not-the-password")

    # Stopped through the API: no server; started again: the same data.
    rds.stop_db_instance(DBInstanceIdentifier="orders-db")
    wait_for("the server stopped", lambda: not connects(host, port, credentials), timeout_s=30)
    assert database_state("orders-db") == "stopped"
    rds.start_db_instance(DBInstanceIdentifier="orders-db")
    wait_for("the server is back", lambda: connects(host, port, credentials), timeout_s=60)
    assert rows(host, port, credentials) == ["kettle", "teapot"]

    # The whole sandbox restarted: the instance comes back from the saved state, on its port.
    sandbox_service.down()
    assert not connects(host, port, credentials)
    sandbox_service.up()
    assert endpoint_and_secret(sandbox_target().client("rds"), "orders-db") == (host, port, credentials)
    wait_for("the server is back after the restart", lambda: connects(host, port, credentials), timeout_s=60)
    assert rows(host, port, credentials) == ["kettle", "teapot"]

    # Rotating the RDS-managed secret: a new password, which the server takes at once; the old one
    # is refused from then on.
    arn = rds.describe_db_instances(DBInstanceIdentifier="orders-db")["DBInstances"][0]["MasterUserSecret"][
        "SecretArn"
    ]
    sandbox_target().client("secretsmanager").rotate_secret(SecretId=arn)
    _, _, rotated = endpoint_and_secret(sandbox_target().client("rds"), "orders-db")
    assert rotated["username"] == "app_admin" and rotated["password"] != credentials["password"]
    wait_for("the old password refused", lambda: not connects(host, port, credentials), timeout_s=30)
    assert rows(host, port, rotated) == ["kettle", "teapot"]


def test_a_deleted_instance_takes_its_server_and_its_data_with_it(home: Path) -> None:
    rds = sandbox_target().client("rds")
    create(rds, "scratch-db", MasterUsername="scratch", MasterUserPassword="a-password-given-by-hand")
    host, port, _ = endpoint_and_secret_or_given(rds, "scratch-db")
    credentials = {"username": "scratch", "password": "a-password-given-by-hand"}
    wait_for("the server accepts the given password", lambda: connects(host, port, credentials), timeout_s=60)
    folder = sandbox_paths().databases_dir / "scratch-db"
    assert (folder / "data" / "PG_VERSION").exists()

    rds.delete_db_instance(DBInstanceIdentifier="scratch-db", SkipFinalSnapshot=True)
    wait_for("the server and its data are gone", lambda: not folder.exists(), timeout_s=30)
    assert not connects(host, port, credentials)
    assert database_state("scratch-db") == "absent"


def endpoint_and_secret_or_given(rds: Any, identifier: str) -> tuple[str, int, None]:
    db = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    assert "MasterUserSecret" not in db
    return db["Endpoint"]["Address"], int(db["Endpoint"]["Port"]), None


def rows(host: str, port: int, credentials: dict[str, str]) -> list[str]:
    with connect(host, port, credentials["username"], credentials["password"]) as db:
        return [str(r[0]) for r in db.execute("SELECT item FROM orders ORDER BY id").fetchall()]


def serving(rds: Any, identifier: str) -> tuple[str, int, dict[str, str]]:
    """The instance's endpoint and credentials, once its server accepts them."""
    host, port, credentials = endpoint_and_secret(rds, identifier)
    wait_for(f"{identifier} serving", lambda: connects(host, port, credentials), timeout_s=60)
    return host, port, credentials


def add(where: tuple[str, int, dict[str, str]], *items: str) -> None:
    host, port, credentials = where
    with connect(host, port, credentials["username"], credentials["password"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL)")
        for item in items:
            db.execute("INSERT INTO orders (item) VALUES (%s)", (item,))


#: An identifier as long as RDS allows.
LONGEST = "ledger-restored-from-its-automated-snapshot-with-a-long-name-63"


def test_snapshots_and_restores_bring_back_the_data_as_it_was(home: Path) -> None:
    rds = sandbox_target().client("rds")
    create(rds, "ledger-db")
    source = serving(rds, "ledger-db")
    add(source, "a", "b")
    taken = rds.create_db_snapshot(DBInstanceIdentifier="ledger-db", DBSnapshotIdentifier="ledger-snap-1")
    assert taken["DBSnapshot"]["Status"] == "creating"  # as RDS reports it until its data is kept
    snapshot_data = sandbox_paths().databases_dir / "snapshots" / "ledger-snap-1"
    wait_for(
        "the snapshot available",
        lambda: (
            rds.describe_db_snapshots(DBSnapshotIdentifier="ledger-snap-1")["DBSnapshots"][0]["Status"]
            == "available"
        ),
        timeout_s=60,
    )
    assert (snapshot_data / "complete").exists()
    add(source, "c")

    # From the snapshot: the rows written before it, under the restored instance's own endpoint
    # and secret.
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="ledger-restored", DBSnapshotIdentifier="ledger-snap-1"
    )
    restored = serving(rds, "ledger-restored")
    assert restored[1] != source[1]
    assert rows(*restored) == ["a", "b"]
    # By the snapshot's ARN too; and from the automated snapshot RDS took as the instance was made,
    # whose id has a colon of its own (rds:ledger-db-DATE): the data as it was then. The restored
    # identifier has RDS's 63 characters, too long to put the server's socket in its own folder.
    arn = taken["DBSnapshot"]["DBSnapshotArn"]
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="ledger-by-arn", DBSnapshotIdentifier=arn)
    assert rows(*serving(rds, "ledger-by-arn")) == ["a", "b"]
    listed = rds.describe_db_snapshots(DBInstanceIdentifier="ledger-db")["DBSnapshots"]
    (automated,) = [s["DBSnapshotIdentifier"] for s in listed if s["DBSnapshotIdentifier"].startswith("rds:")]
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=LONGEST, DBSnapshotIdentifier=automated)
    host, port, credentials = serving(rds, LONGEST)
    with connect(host, port, credentials["username"], credentials["password"]) as db:
        table = db.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()
        items = [r[0] for r in db.execute("SELECT item FROM orders ORDER BY id")] if table == (True,) else []
    assert items in ([], ["a"], ["a", "b"])  # as the automated snapshot found them, before "c"
    # To the latest restorable time: every row.
    rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier="ledger-db",
        TargetDBInstanceIdentifier="ledger-pitr",
        UseLatestRestorableTime=True,
    )
    assert rows(*serving(rds, "ledger-pitr")) == ["a", "b", "c"]
    # Deleted with a final snapshot, which brings it all back.
    rds.delete_db_instance(DBInstanceIdentifier="ledger-db", FinalDBSnapshotIdentifier="ledger-final")
    wait_for("ledger-db gone", lambda: database_state("ledger-db") == "absent", timeout_s=30)
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="ledger-back", DBSnapshotIdentifier="ledger-final"
    )
    assert rows(*serving(rds, "ledger-back")) == ["a", "b", "c"]
    # A deleted snapshot's data goes with it.
    rds.delete_db_snapshot(DBSnapshotIdentifier="ledger-snap-1")
    wait_for("the snapshot's data removed", lambda: not snapshot_data.exists(), timeout_s=30)
    for identifier in ("ledger-restored", "ledger-by-arn", LONGEST, "ledger-pitr", "ledger-back"):
        rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)


# --- the db-destroyed drill and the db-restore runbook (issue 15 item 4) ---


def test_a_destroyed_database_is_restored_with_every_write_acknowledged_before_its_restore_point(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The db-destroyed drill as `labkit drill run` runs it (its Chaos Toolkit experiment: the
    drill's check before and after, the injection, db-restore headless as a dry run then confirmed),
    on an instance made through the RDS API: no Terraform, so no load balancer to probe and no
    `alb-serves` check. Orders written, a restore point, more orders, the instance deleted; restored.
    Then the checks shown failing: the writes after the restore point are missing, exactly those,
    and a changed row is named by its checksum, an added one by the row count."""
    target = sandbox_target()
    rds = target.client("rds")
    create(rds, "drill-db")
    host, port, credentials = serving(rds, "drill-db")
    url = "postgresql+psycopg://{username}:{password}@{host}:{port}/orders".format(
        **credentials, host=host, port=port
    )
    engine = create_engine(url)
    try:
        upgrade(engine, FIRST_SCHEMA)  # the app's own orders table
    finally:
        engine.dispose()
    names = StackNames.for_target(target)
    ensure_table(target, names.ledger_table)  # the runbooks' audit records
    # The state bucket, empty: the runner proves from it that the dry run changed no Terraform state.
    target.client("s3").create_bucket(Bucket=names.state_bucket)

    drill = replace(db_destroyed.DRILL, steady_state=())
    run = drill_runner._DrillRun(drill, target, "staging", tmp_path, say=lambda _line: None)
    monkeypatch.setattr(drill_runner, "_current", run)
    arguments = {"instance": "drill-db", "writes": 20, "later_writes": 5}
    journal = run_experiment(drill_runner.experiment(drill, "staging", arguments))
    assert journal["status"] == "completed" and not journal["deviated"], json.dumps(journal, default=str)[
        -3000:
    ]
    facts = run.facts
    before, after = facts["written_before"], facts["written_after"]
    assert len(before) == 20 and len(after) == 5 and max(before) < min(after)
    assert database_state("drill-db") == "absent"
    dry, done = run.runs
    assert (dry.record.outcome, done.record.outcome) == ("planned", "recovered")
    assert [step.outcome for step in dry.record.steps if step.section == "act"] == ["would"]
    verified = {
        step.name: (step.outcome, step.detail) for step in done.record.steps if step.section == "verify"
    }
    assert verified["Row counts and checksums equal the restore point's"][0] == "ok", verified
    assert verified["Every acknowledged write is present"] == (
        "ok",
        "all 20 acknowledged writes present in orders",
    )
    restored = str(facts["restored_instance"])

    ok, detail = db_destroyed.writes_restored(target, "staging")
    assert ok, detail
    assert detail.endswith("5 of 5 written after it are not (the restore point's loss)"), detail
    where = db_restore.endpoint(target, restored)
    with where.connect() as conn:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM orders ORDER BY id").fetchall()]
    assert ids == before  # exactly the acknowledged writes before the restore point

    # A second run finds the restored instance and has nothing to do.
    diagnosis = db_restore.diagnose(
        Stack("staging", target, reporter=None), instance="drill-db", snapshot=str(facts["snapshot"])
    )
    assert diagnosis.instance_status is None and diagnosis.new_instance == restored
    assert db_restore.actions(Stack("staging", target, reporter=None), diagnosis) == []
    # Held to every write acknowledged, the restore point misses exactly the later ones ...
    check = db_restore.RestoredDatabase(target, diagnosis)
    ok, detail = check.writes_present(before + after)
    assert (ok, detail) == (
        False,
        f"5 of 25 acknowledged writes missing from orders: {', '.join(map(str, after))}",
    )
    check.close()
    # ... and a row changed since, then one added, are differences in the figures.
    with where.connect() as conn:
        conn.execute("UPDATE orders SET item = 'changed' WHERE id = %s", (before[0],))
    check = db_restore.RestoredDatabase(target, diagnosis)
    assert check.figures_match() == (
        False,
        "orders: 20 rows as at the restore point, but their checksum differs",
    )
    check.close()
    with where.connect() as conn:
        conn.execute("INSERT INTO orders (item, release_version) VALUES ('late', 'test')")
    check = db_restore.RestoredDatabase(target, diagnosis)
    assert check.figures_match() == (False, "orders: 21 rows, 20 at the restore point")
    check.close()
    rds.delete_db_instance(DBInstanceIdentifier=restored, SkipFinalSnapshot=True)


# --- a release's migrations on an instance's database (issue 15 item 4, `labkit db`) ---


def test_a_releases_own_migrations_run_on_the_database_its_secret_opens(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What `labkit db history|current|migrate ENV` runs, on an instance as an environment's
    ``database`` output describes it: the published release's code, its credentials from the secret."""
    target = sandbox_target()
    rds = target.client("rds")
    create(rds, "migrate-db")
    host, port, _ = serving(rds, "migrate-db")
    (described,) = rds.describe_db_instances(DBInstanceIdentifier="migrate-db")["DBInstances"]
    database = EnvironmentDatabase.from_output("staging", {
        "identifier": "migrate-db", "address": host, "port": port, "database_name": described["DBName"],
        "master_user_secret_arn": described["MasterUserSecret"]["SecretArn"],
    })  # fmt: skip
    bucket = "migrate-artifacts"
    target.client("s3").create_bucket(Bucket=bucket)
    upload_artifact(target, bucket, "1.0.0", tmp_path_factory.mktemp("migrate-releases"))

    listed = run_migrations(target, bucket, "1.0.0", "history", None)
    assert [line.split()[0] for line in listed.splitlines()] == [r.revision for r in history()]
    assert run_migrations(target, bucket, "1.0.0", "current", database).split() == ["none"]
    # No revision: the release's own (release.json's schema), as before it takes traffic.
    upgraded = run_migrations(target, bucket, "1.0.0", "upgrade", database)
    assert upgraded.split() == ["upgraded", "from", "none", "to", FIRST_SCHEMA]
    assert run_migrations(target, bucket, "1.0.0", "current", database).split() == [FIRST_SCHEMA]

    with pytest.raises(MigrationError, match="9999") as unknown:
        run_migrations(target, bucket, "1.0.0", "upgrade", database, "9999")
    assert "migrate-db" in str(unknown.value)
    with pytest.raises(MigrationError, match=r"Release 9\.9\.9 is not published"):
        run_migrations(target, bucket, "9.9.9", "current", database)
    rds.delete_db_instance(DBInstanceIdentifier="migrate-db", SkipFinalSnapshot=True)


# --- the fleets' apps on the database, wired by Terraform (issue 15 item 3) ---

DBFLEET_ROOT = Path(__file__).parent / "tf_dbfleet"


def test_the_composition_runs_the_fleets_app_on_its_database(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The composition applied with enable_database by real Terraform: the blue instance's app gets
    the database's settings from its user data and its role's credentials, reads the secret as that
    role (IAM enforced), and behind the load balancer writes and reads orders in the PostgreSQL.

    The module's earlier instances (orders-db) are still in the region, as other databases are in
    an account: the provider reads its new instance back by resource id, which must be its own (CI15
    failed here with "couldn't find resource" while moto gave every instance the same one)."""
    target = sandbox_target()
    bucket = "dbwire-artifacts"
    target.client("s3").create_bucket(Bucket=bucket)
    upload_artifact(target, bucket, "1.0.0", tmp_path_factory.mktemp("dbwire-releases"))
    work = tmp_path_factory.mktemp("dbwire")
    shutil.copytree(DBFLEET_ROOT, work, dirs_exist_ok=True)
    shutil.copytree(terraform_dir() / "modules", work / "modules")
    tf = Terraform(work, target=target, data_dir=work / ".tfdata", reporter=lambda _line: None)
    tf.init()
    tf.apply(variables={"artifact_bucket": bucket})
    outputs = tf.output()
    database = outputs["database"]
    group = str(outputs["blue_target_group_arn"])

    def instance_logs() -> str:
        return "\n".join(p.read_text()[-2000:] for p in (home / "instances").glob("*/app.log"))

    try:
        wait_for(
            "blue's app ready on the database",
            lambda: [s for s, _ in target_states(target, group).values()] == ["healthy"],
            timeout_s=90,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{instance_logs()}") from exc

    # The app's environment: the database's settings and the sandbox's API as the instance's role,
    # nothing of this process's (LABKIT_SANDBOX_HOME is set here); the role read the secret.
    (app,) = [i for i in sandbox_service.instances() if i["state"] == "running"]
    raw = Path(f"/proc/{app['pid']}/environ").read_bytes().decode().split("\0")
    environ = dict(entry.split("=", 1) for entry in raw if "=" in entry)
    assert "LABKIT_SANDBOX_HOME" not in environ
    assert {k: v for k, v in environ.items() if k.startswith(("AWS_", "DATABASE_"))}.keys() == {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION",
        "DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME",
    }  # fmt: skip
    assert environ["DATABASE_SECRET_ARN"] == database["master_user_secret_arn"]
    calls = sandbox_service.recorded_calls(target, environ["AWS_ACCESS_KEY_ID"])
    assert {(c["eventName"], c.get("errorCode")) for c in calls} == {("GetSecretValue", None)}, calls

    # The schema, as `labkit db migrate` puts it (the deploy will, before a release takes traffic):
    # release 1.0.0's own migrations, on the database that the composition's output names.
    environment_database = EnvironmentDatabase.from_output("dbwire", database)
    migrated = run_migrations(target, bucket, "1.0.0", "upgrade", environment_database)
    assert migrated.split()[-1] == FIRST_SCHEMA
    _, _, credentials = endpoint_and_secret(target.client("rds"), str(database["identifier"]))
    url = "postgresql+psycopg://{username}:{password}@{host}:{port}/{name}".format(
        **credentials, host=database["address"], port=database["port"], name=database["database_name"]
    )
    engine = create_engine(url)
    try:
        alb = urlsplit(target.alb_url(str(outputs["alb_dns_name"])))
        conn = http.client.HTTPConnection(alb.hostname, alb.port, timeout=10)
        conn.request("GET", "/health/ready")
        ready = conn.getresponse()
        assert ready.status == 200, ready.read()
        ready.read()
        conn.request("POST", "/orders", body=json.dumps({"item": "kettle"}),
                     headers={"Content-Type": "application/json"})  # fmt: skip
        created = conn.getresponse()
        order = json.loads(created.read())
        assert created.status == 201, order
        assert (order["item"], order["written_by"], order["color"]) == ("kettle", "1.0.0", "blue")
        conn.request("GET", f"/orders/{order['id']}")
        read = conn.getresponse()
        assert (read.status, json.loads(read.read())["item"]) == (200, "kettle")
        conn.close()
        with engine.connect() as db:
            row = db.execute(
                text("SELECT item, release_version FROM orders WHERE id = :id"), {"id": order["id"]}
            ).one()
        assert tuple(row) == ("kettle", "1.0.0")  # the row itself, in the real PostgreSQL
    finally:
        engine.dispose()
