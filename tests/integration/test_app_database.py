"""Issue 15 items 3 and 5: the app on a real PostgreSQL 16, and the write probe.

One server for the module, run by the sandbox's own machinery (:class:`DatabaseServers`, the
``pgserver`` binaries) in a temporary folder; the secret in moto's in-process Secrets Manager.
The apps are built in this process (the secret is read through the mock) and tried through
Flask's test client; the probe's app is a built release under gunicorn, which reads the secret
from a moto server on loopback. No Terraform and no sandbox service.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from moto.server import ThreadedMotoServer
from sqlalchemy import Engine
from typer.testing import CliRunner

from app import create_app
from app.database import SecretCredentials, database_settings, make_engine
from app.migrations import current, downgrade, expand_revision, upgrade
from app.migrations.__main__ import main as migrations_cli
from labkit.cli import app as cli
from labkit.deploy.writeprobe import WriteProbe
from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release
from labkit.sandbox.client.paths import SandboxPaths
from labkit.sandbox.server.databases import DatabaseServers, DatabaseSpec, socket_dir
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

USER = "app_admin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Database:
    """The module's server, its secret, and what the tests build on them."""

    servers: DatabaseServers
    spec: DatabaseSpec
    secret_arn: str
    folder: Path
    engines: list[Engine]

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_SECRET_ARN": self.secret_arn,
            "DATABASE_HOST": "127.0.0.1",
            "DATABASE_PORT": str(self.spec.port),
            "DATABASE_NAME": "orders",
        }

    def set_state(self, status: str) -> None:
        self.spec = replace(self.spec, status=status)
        self.servers.reconcile({self.spec.identifier: self.spec})
        if status == "stopped":  # the state says stopped at once; the server stops in its own time
            wait_for("the server stopped", lambda: not self.listening(), 30, 0.05)
        else:
            wait_for("the server running", lambda: self.servers.describe()[0].state == "running", 30, 0.05)

    def listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.spec.port)) == 0

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection over the server's socket (it trusts local connections)."""
        host = str(socket_dir(self.servers.root, self.spec.identifier))
        return psycopg.connect(host=host, port=self.spec.port, user=USER, dbname="orders", autocommit=True)

    def migrator(self) -> Engine:
        settings = database_settings(self.env.get)
        assert settings is not None
        engine = make_engine(settings, SecretCredentials(settings))
        self.engines.append(engine)
        return engine

    def release(self, version: str, schema: str, **faults: str) -> Path:
        """A release.json of ``version`` on ``schema``, in a folder of its own."""
        folder = self.folder / f"release-{version}-{schema}-{len(list(self.folder.iterdir()))}"
        folder.mkdir()
        manifest: dict[str, Any] = {
            "version": version,
            "build_time": "2025-01-31T12:00:00Z",
            "git_commit": "abc",
        }
        manifest.update({"schema": schema, **({"faults": faults} if faults else {})})
        (folder / "release.json").write_text(json.dumps(manifest))
        return folder / "release.json"

    def app(self, version: str = "1.0.0", schema: str = "0001", **faults: str) -> Flask:
        config = {
            "COLOR": "blue",
            "INSTANCE_ID": "i-0test",
            "RELEASE_FILE": self.release(version, schema, **faults),
        }
        flask_app = create_app({**config, **self.env})
        self.engines.append(flask_app.extensions["bluegreen"].database[0])
        return flask_app


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    folder = tmp_path_factory.mktemp("appdb")
    data = SandboxPaths(folder).databases_dir  # where PostgreSQL may run, as root too
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
            patch.delenv(name, raising=False)
        password = "first-password-0123456789"
        secret = boto3.client("secretsmanager").create_secret(
            Name="rds!db-appdb", SecretString=json.dumps({"username": USER, "password": password})
        )
        servers = DatabaseServers(data)
        spec = DatabaseSpec("appdb", "123456789012", "us-east-1", "available", USER, password, "orders",
                            free_port())  # fmt: skip
        db = Database(servers, spec, secret["ARN"], folder, [])
        try:
            db.set_state("available")
            yield db
        finally:
            for engine in db.engines:
                engine.dispose()
            servers.close()
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture()
def fresh(database: Database) -> Iterator[Database]:
    """The database with no schema at first; the test's engines closed after it."""
    downgrade(database.migrator(), "base")
    yield database
    for engine in database.engines:
        engine.dispose()
    database.engines.clear()


def post(flask_app: Flask, item: str) -> tuple[int, dict[str, Any]]:
    response = flask_app.test_client().post("/orders", json={"item": item})
    return response.status_code, response.get_json()


def items(flask_app: Flask, ids: list[int]) -> list[str | None]:
    """The item each id reads as through ``flask_app``; None where it does not answer 200."""
    client = flask_app.test_client()
    answers = [client.get(f"/orders/{i}") for i in ids]
    return [a.get_json()["item"] if a.status_code == 200 else None for a in answers]


def test_orders_are_stored_and_read_back_with_the_version_that_wrote_them(fresh: Database) -> None:
    upgrade(fresh.migrator(), "0001")
    older, newer = fresh.app("1.0.0"), fresh.app("1.0.1")
    status, body = post(older, "kettle")
    assert status == 201 and body["item"] == "kettle" and body["written_by"] == "1.0.0"
    answer = newer.test_client().get(f"/orders/{body['id']}")
    assert answer.status_code == 200
    read = answer.get_json()
    assert (read["id"], read["item"], read["written_by"], read["version"]) == (body["id"], "kettle", "1.0.0",
                                                                               "1.0.1")  # fmt: skip
    assert newer.test_client().get("/orders/999999").status_code == 404
    assert newer.test_client().post("/orders", json={"item": ""}).status_code == 400
    assert newer.test_client().get("/health/ready").get_json()["status"] == "ready"


def test_expand_then_contract_keeps_both_colors_working_and_migrations_go_both_ways(fresh: Database) -> None:
    migrator = fresh.migrator()
    assert current(migrator) == ()
    upgrade(migrator, "0001")
    v1 = fresh.app("1.0.0", "0001")
    ids = [post(v1, "a")[1]["id"]]

    # Expand: the release on 0001 and the one on 0002 run side by side, each reading every write.
    upgrade(migrator, "0002")
    v2 = fresh.app("1.1.0", "0002")
    ids += [post(v1, "b")[1]["id"], post(v2, "c")[1]["id"]]
    assert items(v1, ids) == items(v2, ids) == ["a", "b", "c"]
    # The release on 0003 deploys while the schema is still 0002 (its old color runs 0002 code).
    v3 = fresh.app("1.2.0", "0003")
    ids.append(post(v3, "d")[1]["id"])
    assert items(v2, ids) == items(v3, ids) == items(v1, ids) == ["a", "b", "c", "d"]

    # Contract: once only 0003 code runs. 0001 code cannot write any more: it needs item.
    upgrade(migrator, "0003")
    assert current(migrator) == ("0003",)
    assert items(v3, ids) == ["a", "b", "c", "d"]
    status, body = post(v1, "e")
    assert status == 500 and "item" in body["error"]

    # And all the way back down, the data kept.
    downgrade(migrator, "0001")
    assert current(migrator) == ("0001",)
    assert items(v1, ids) == ["a", "b", "c", "d"]


def test_the_migrations_run_from_an_artifact_root_with_the_apps_settings(
    fresh: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m app.migrations``, as labkit or an instance runs it: upgrade goes to the
    revision the release names."""
    for name, value in fresh.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("APP_RELEASE_FILE", str(fresh.release("1.1.0", "0002")))
    assert migrations_cli(["upgrade"]) == 0
    assert migrations_cli(["current"]) == 0
    assert migrations_cli(["downgrade"]) == 2
    assert migrations_cli(["downgrade", "0001"]) == 0
    assert migrations_cli(["downgrade", "0001"]) == 0  # a rollback's downgrade, run again
    assert migrations_cli(["revision"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "upgraded from none to 0002",
        "0002",
        "downgraded from 0002 to 0001",
        "at 0001: nothing to downgrade to 0001",
        "0002",
    ]
    assert "downgrade needs a revision" in out.err


def test_expand_stops_short_of_the_contract_step_and_is_idempotent(
    fresh: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a deploy runs: ``expand`` before the release takes traffic (0003 contracts, so a
    release on 0003 expands to 0002), ``upgrade`` once the old color is parked, and on rollback
    ``downgrade`` to the old release's revision, each a no-op when run again."""
    for name, value in fresh.env.items():
        monkeypatch.setenv(name, value)
    assert expand_revision("0003") == "0002"
    assert expand_revision("0002") == "0002"
    assert expand_revision("0002_onestep") == "0002_onestep"  # the fault is not marked: it breaks
    monkeypatch.setenv("APP_RELEASE_FILE", str(fresh.release("1.0.0", "0001")))
    assert migrations_cli(["upgrade"]) == 0
    monkeypatch.setenv("APP_RELEASE_FILE", str(fresh.release("1.2.0", "0003")))
    steps = [["expand"], ["expand"], ["upgrade"], ["upgrade"], ["expand"], ["downgrade", "0002"],
             ["downgrade", "0003"]]  # fmt: skip
    assert [migrations_cli(step) for step in steps] == [0] * len(steps)
    assert capsys.readouterr().out.splitlines() == [
        "upgraded from none to 0001",
        "expanded from 0001 to 0002",
        "at 0002: nothing to expand for 0003",
        "upgraded from 0002 to 0003",
        "at 0003: nothing to upgrade to 0003",
        "at 0003: nothing to expand for 0003",
        "downgraded from 0003 to 0002",
        "at 0002: nothing to downgrade to 0003",
    ]
    assert current(fresh.migrator()) == ("0002",)


def test_the_one_step_rename_breaks_the_previous_release_until_rolled_back(fresh: Database) -> None:
    migrator = fresh.migrator()
    upgrade(migrator, "0001")
    old = fresh.app("1.0.0", "0001")
    first = post(old, "before")[1]["id"]
    bad = fresh.app("1.1.0", "0002", migration="one_step")
    upgrade(migrator, "0002_onestep")

    assert post(bad, "new")[0] == 201
    status, body = post(old, "during")
    assert status == 500 and "item" in body["error"]
    assert items(old, [first]) == [None]
    assert old.test_client().get("/health/ready").status_code == 200  # the schema is not readiness

    downgrade(migrator, "0001")
    assert post(old, "after")[0] == 201
    assert items(old, [first]) == ["before"]


def test_readiness_fails_while_the_database_is_down_and_recovers(fresh: Database) -> None:
    upgrade(fresh.migrator(), "0001")
    flask_app = fresh.app()
    client = flask_app.test_client()
    assert post(flask_app, "warm")[0] == 201
    assert client.get("/health/ready").status_code == 200
    fresh.set_state("stopped")
    try:
        started = time.monotonic()
        answer = client.get("/health/ready")
        took = time.monotonic() - started
        assert answer.status_code == 503 and answer.get_json()["status"] == "database"
        assert "does not answer" in answer.get_json()["reason"]
        assert took < 5, f"readiness took {took:.1f} s to fail"
        assert client.get("/health/live").status_code == 200
        assert client.post("/orders", json={"item": "x"}).status_code == 500
    finally:
        fresh.set_state("available")
    # The pool's dead connections are replaced (pre-ping), so the first request after works.
    assert client.get("/health/ready").status_code == 200
    assert client.post("/orders", json={"item": "y"}).status_code == 201


class Traffic:
    """Threads that each POST an order and GET it back through one app, until stopped; paused
    between requests while the test empties the pools, so no request is cut."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        #: The error of each failed request, for the assertion's message.
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._turn = threading.Condition()
        self._stopped = self._paused = False
        self._busy = 0

    def add(self, flask_app: Flask, threads: int = 2) -> None:
        for _ in range(threads):
            thread = threading.Thread(target=self._run, args=(flask_app,))
            thread.start()
            self._threads.append(thread)

    def _run(self, flask_app: Flask) -> None:
        client = flask_app.test_client()
        while True:
            with self._turn:
                self._turn.wait_for(lambda: self._stopped or not self._paused)
                if self._stopped:
                    return
                self._busy += 1
            try:
                self._exchange(client)
            finally:
                with self._turn:
                    self._busy -= 1
                    self._turn.notify_all()

    def _exchange(self, client: FlaskClient) -> None:
        created = client.post("/orders", json={"item": "rotating"})
        answers = [created]
        if created.status_code == 201:
            answers.append(client.get(f"/orders/{created.get_json()['id']}"))
        for answer in answers:
            self.statuses.append(answer.status_code)
            if answer.status_code not in (200, 201):
                self.errors.append(str((answer.get_json() or {}).get("error")))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request in flight while the block runs."""
        with self._turn:
            self._paused = True
            self._turn.wait_for(lambda: self._busy == 0)
        try:
            yield
        finally:
            with self._turn:
                self._paused = False
                self._turn.notify_all()

    def more(self, count: int) -> None:
        """Wait for ``count`` more requests."""
        target = len(self.statuses) + count
        wait_for(f"{count} more requests", lambda: len(self.statuses) >= target, 15, 0.02)

    def stop(self) -> list[int]:
        """Stop; the statuses that were not 200 or 201."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()
        for thread in self._threads:
            thread.join(15)
        return [status for status in self.statuses if status not in (200, 201)]


def test_a_password_rotation_during_traffic_fails_no_request(fresh: Database) -> None:
    """Rotated twice under traffic. After each change of the database's password the apps' pools
    are emptied (as a worker restart or dropped connections would), so they connect again and
    their password is refused: only a fresh read of the secret lets them in.

    1. As RDS rotates: the new password staged AWSPENDING, set on the database, then AWSCURRENT.
    2. As the sandbox rotates: the secret first, the database moments later, and an app that
       starts in between (it reads a password the database does not take yet)."""
    upgrade(fresh.migrator(), "0001")
    secrets = boto3.client("secretsmanager")
    passwords = [fresh.spec.password, "second-password-9876543210", "third-password-5647382910"]

    traffic = Traffic()

    def stage(password: str) -> str:
        """The new value, staged AWSPENDING; its version id."""
        value = json.dumps({"username": USER, "password": password})
        staged = secrets.put_secret_value(
            SecretId=fresh.secret_arn, SecretString=value, VersionStages=["AWSPENDING"]
        )
        return str(staged["VersionId"])

    def make_current(version: str) -> None:
        stages = secrets.describe_secret(SecretId=fresh.secret_arn)["VersionIdsToStages"]
        secrets.update_secret_version_stage(
            SecretId=fresh.secret_arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=version,
            RemoveFromVersionId=next(v for v, s in stages.items() if "AWSCURRENT" in s),
        )

    def set_on_database(password: str) -> None:
        with traffic.paused():
            with fresh.admin() as admin:
                admin.execute(f"ALTER ROLE {USER} WITH PASSWORD '{password}'")
            fresh.spec = replace(fresh.spec, password=password)  # what the server holds from now on
            for engine in fresh.engines:
                engine.dispose()  # every connection is idle: closed, so the next request opens one

    traffic.add(fresh.app())
    try:
        traffic.more(30)
        second = stage(passwords[1])
        set_on_database(passwords[1])
        traffic.more(30)
        make_current(second)
        traffic.more(30)

        make_current(stage(passwords[2]))
        traffic.add(fresh.app())  # reads the third password, which the database refuses yet
        traffic.more(30)
        set_on_database(passwords[2])
        traffic.more(30)
    finally:
        failed = traffic.stop()
    assert failed == [], traffic.errors[:3]
    assert len(traffic.statuses) >= 150
    for old in passwords[:2]:
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=fresh.spec.port, user=USER, password=old, dbname="orders")


@pytest.fixture(scope="module")
def served(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database]]:
    """A built release on 0001 under gunicorn (2 workers, 2 threads), as an instance runs it: its
    settings in the environment, the secret read over HTTP from a moto server on loopback (it
    serves this process's mocked backends). One for the module's probe tests, which come last."""
    migrator = database.migrator()
    downgrade(migrator, "base")
    upgrade(migrator, "0001")
    folder = tmp_path_factory.mktemp("served")
    release = unpack_release(build_release("1.0.0", out_dir=folder), folder / "release")
    moto_port = free_port()
    aws = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    aws.start()
    env = {**os.environ, **database.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"}
    try:
        with AppProcess.start(
            release, color="green", instance_id="i-0probe", log_path=folder / "app.log", workers=2,
            threads=2, drain_s=0, env=env,
        ) as app:  # fmt: skip
            yield app.url, database
    finally:
        aws.stop()


def test_the_write_probe_counts_exactly_the_writes_lost_behind_its_back(
    served: tuple[str, Database],
) -> None:
    url, db = served
    probe = WriteProbe(url + "/", rate=50, duration=2)
    probe.start()
    probe.wait(timeout=15)
    check = probe.verify()
    assert (check.sent, check.acknowledged, check.found) == (100, 100, 100)
    assert check.lost == check.unreadable == []
    assert probe.results()["status"].eq(201).all()

    gone = sorted(i for i in probe.acknowledged() if i is not None)[10:17]
    with db.admin() as admin:
        admin.execute("DELETE FROM orders WHERE id = ANY(%s)", (gone,))
    after = probe.verify()
    assert (after.found, sorted(i for i in after.lost if i is not None)) == (93, gone)
    assert after.summary() == (
        "writes: 100 sent, 100 acknowledged, 0 failed; read back: 93 found, 7 lost, 0 unreadable"
    )


def test_labkit_probe_write_prints_the_summary_and_fails_only_on_a_lost_write(
    served: tuple[str, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, db = served
    result = CliRunner().invoke(cli, ["probe", url, "--write", "--rate", "20", "--duration", "1"])
    assert result.exit_code == 0, result.output
    assert "writes: 20 sent, 20 acknowledged, 0 failed; read back: 20 found, 0 lost" in result.output

    # The same command with every write deleted as soon as it is acknowledged: all lost, exit 1.
    original: Callable[..., Any] = WriteProbe.verify

    def verify_after_delete(self: WriteProbe) -> Any:
        with db.admin() as admin:
            admin.execute("DELETE FROM orders WHERE item LIKE %s", (f"probe-{self.run_id}-%",))
        return original(self)

    monkeypatch.setattr(WriteProbe, "verify", verify_after_delete)
    result = CliRunner().invoke(cli, ["probe", url, "--write", "--rate", "20", "--duration", "1"])
    assert result.exit_code == 1
    assert "read back: 0 found, 20 lost" in result.output and "lost ids:" in result.output
