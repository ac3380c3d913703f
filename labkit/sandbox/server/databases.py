"""Each RDS PostgreSQL instance served as a real PostgreSQL 16 on a loopback port, as each EC2
instance is served as an app process.

:class:`DatabaseServers` is reconciled with the instances moto's RDS holds (:func:`wanted_databases`,
read under the model lock). The server binaries come from the ``pgserver`` wheel, which bundles
PostgreSQL 16; nothing is installed on the machine.

- **Create**: a new instance gets a data folder (``initdb`` with the instance's master user as the
  superuser, password authentication over TCP) and a ``postgres`` listening on 127.0.0.1 at the
  port the sandbox gave the instance (:func:`labkit.sandbox.server.mends`: the instance's endpoint
  is ``127.0.0.1`` and that port, so whatever reads the endpoint from the RDS API connects). Its
  database (``DBName``) is created.
- **Credentials**: the master password is the one in the instance's RDS-managed secret (or the one
  given with ``MasterUserPassword``); when it changes (rotation, ``ModifyDBInstance``) the server's
  role gets the new one, as RDS sets it.
- **Stop/start and delete**: ``stopped`` stops the server and keeps its data; a deleted instance's
  server stops and its data folder goes.
- **Snapshots**: a snapshot's data is captured in the reconcile pass after the call (within about a
  second); until then RDS reports it ``creating`` (:func:`mark_snapshots`), then ``available``. Its
  data is as of the capture, not of the call: a write in between is in it, where on AWS it is not,
  so a restore point is taken while nothing writes, or waited for before writing on.
- **Restarts**: data folders outlive the service; ``labkit sandbox up`` starts a server again for
  every instance in the restored state, on its port.

PostgreSQL refuses to run as root. Run as root (CI containers), the servers run as a system user
made for them (:data:`SYSTEM_USER`) and their data lives outside the sandbox's private folder, under
``/var/lib/labkit/postgres/``, since that user cannot traverse a root-only home
(:attr:`labkit.sandbox.client.paths.SandboxPaths.databases_dir`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from labkit.sandbox.client.paths import ROOT_DATABASES

log = logging.getLogger(__name__)

ENGINE = "postgres"
#: The account that runs the servers when the sandbox runs as root.
SYSTEM_USER = "labkit-postgres"
#: How long a new or restarted server may take to accept connections.
START_TIMEOUT_S = 30.0
#: The folder (in the databases' folder) that keeps each snapshot's data, and the file that marks
#: a snapshot's data complete.
SNAPSHOTS = "snapshots"
COMPLETE = "complete"
#: The folder of the servers' socket folders (an underscore: no RDS identifier can take the name).
SOCKETS = "_run"

ServerState = Literal["starting", "running", "stopped", "failed"]


@dataclass(frozen=True)
class DatabaseSpec:
    """One RDS instance as moto holds it."""

    identifier: str
    account_id: str
    region: str
    status: str
    username: str
    password: str
    db_name: str | None
    port: int
    #: Where a restored instance's data comes from: ("snapshot", SNAPSHOT_ID) or ("instance",
    #: SOURCE_ID) for a point-in-time restore; None for a new, empty instance.
    source: tuple[str, str] | None = None


@dataclass(frozen=True)
class DatabaseInfo:
    """One instance's server as the sandbox runs it."""

    identifier: str
    port: int
    state: ServerState
    detail: str = ""


def wanted_databases() -> dict[str, DatabaseSpec]:
    """Every PostgreSQL instance in moto's RDS, by identifier. Call with the model lock held."""
    from moto.rds.models import rds_backends

    found: dict[str, DatabaseSpec] = {}
    for account_id, regions in rds_backends.items():
        for region, backend in regions.items():
            for db in list(backend.databases.values()):
                if str(db.engine) != ENGINE:
                    continue
                found[db.db_instance_identifier] = _spec(db, account_id, region)
    return found


def _spec(db: Any, account_id: str, region: str) -> DatabaseSpec:
    return DatabaseSpec(
        identifier=db.db_instance_identifier,
        account_id=account_id,
        region=region,
        status=str(db.status),
        username=str(db.master_username),
        password=master_password(db),
        db_name=db.db_name,
        port=int(db.port or 0),
        source=getattr(db, "labkit_restored_from", None),
    )


def wanted_snapshots() -> dict[str, str]:
    """Every snapshot of a PostgreSQL instance in moto's RDS: snapshot id -> the instance it was
    taken of. Call with the model lock held."""
    from moto.rds.models import rds_backends

    found: dict[str, str] = {}
    for regions in rds_backends.values():
        for backend in regions.values():
            for snapshot in list(backend.database_snapshots.values()):
                if str(snapshot.database.engine) == ENGINE:
                    found[str(snapshot.db_snapshot_identifier)] = str(
                        snapshot.database.db_instance_identifier
                    )
    return found


def mark_snapshots(captured: set[str]) -> None:
    """Each PostgreSQL snapshot's status: ``creating`` until the sandbox holds its data (as RDS
    reports a snapshot until it is done), ``available`` from then on. Call with the model lock held."""
    from moto.rds.models import rds_backends

    for regions in rds_backends.values():
        for backend in regions.values():
            for snapshot in list(backend.database_snapshots.values()):
                if str(snapshot.database.engine) == ENGINE:
                    done = str(snapshot.db_snapshot_identifier) in captured
                    snapshot.status = "available" if done else "creating"


def master_password(db: Any) -> str:
    """The instance's master password now: its RDS-managed secret's current value, else the one it
    was created or modified with."""
    import json

    managed = (
        getattr(db, "master_user_secret", None) if getattr(db, "manage_master_user_password", False) else None
    )
    if managed is not None:
        with contextlib.suppress(Exception):  # a secret deleted by hand: fall back as below
            current = managed.secretsmanager.get_secret_value(managed.secret_arn, None, "AWSCURRENT")
            return str(json.loads(current["SecretString"])["password"])
    # The API never returns the password (moto's property raises); moto keeps it here.
    return str(getattr(db, "_master_user_password", None) or "")


def bin_dir() -> Path:
    """The PostgreSQL 16 binaries of the ``pgserver`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("the pgserver package is not installed: `make setup` installs it")
    return Path(spec.origin).parent / "pginstall" / "bin"


def socket_dir(root: Path, identifier: str) -> Path:
    """The folder of the socket of instance ``identifier``'s server (a superuser may connect there
    without a password). Beside the instances' folders and named by a digest rather than inside the
    instance's folder: a socket's path may be 107 bytes at most, and an RDS identifier alone 63."""
    return root / SOCKETS / hashlib.sha256(identifier.encode()).hexdigest()[:12]


class _Server:
    """One instance's server and the queue of work on it, done one job at a time in order."""

    def __init__(self, spec: DatabaseSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.state: ServerState = "starting"
        self.detail = ""
        self.password_set = ""
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"db-{spec.identifier}", daemon=True)
        self._worker.start()

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return socket_dir(self.folder.parent, self.spec.identifier)

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def retire(self) -> None:
        """No more jobs: the worker ends after the ones queued."""
        self._jobs.put(None)

    def join(self, timeout_s: float) -> None:
        self._worker.join(timeout_s)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:  # one failed job must not stop the queue; the status says it
                self.state, self.detail = "failed", f"{type(exc).__name__}: {exc}"
                log.exception(
                    "database %s: %s failed", self.spec.identifier, getattr(job, "__name__", "a job")
                )


class DatabaseServers:
    """The PostgreSQL servers of the sandbox's RDS instances, and their snapshots' data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._bin = bin_dir()
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._user = _system_user() if os.geteuid() == 0 else None
        if self._user is not None:  # the system user must reach its folder through /var/lib/labkit
            for folder, mode in ((ROOT_DATABASES.parent, 0o755), (ROOT_DATABASES, 0o711)):
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(mode)
        for folder in (root, root / SNAPSHOTS, root / SOCKETS):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._own(folder)
        #: Snapshots whose data is kept (or being captured), by id; those on disk from a last run.
        self._snapshots = {p.name for p in (root / SNAPSHOTS).iterdir() if (p / COMPLETE).exists()}
        #: Snapshots whose data is complete.
        self._captured = set(self._snapshots)

    def reconcile(self, wanted: dict[str, DatabaseSpec], snapshots: dict[str, str] | None = None) -> None:
        """Start, stop, delete and re-credential servers so they match ``wanted``, and capture the
        data of each new snapshot in ``snapshots`` (id -> instance) before its instance goes."""
        with self._lock:
            for snapshot_id, instance in (snapshots or {}).items():
                if snapshot_id not in self._snapshots and instance in self._servers:
                    self._snapshots.add(snapshot_id)
                    server = self._servers[instance]
                    server.submit(functools.partial(self._capture, server, snapshot_id))
            for snapshot_id in [i for i in self._snapshots if snapshots is not None and i not in snapshots]:
                self._snapshots.discard(snapshot_id)
                self._captured.discard(snapshot_id)
                shutil.rmtree(self.root / SNAPSHOTS / snapshot_id, ignore_errors=True)
            for identifier in [i for i in self._servers if i not in wanted]:
                server = self._servers.pop(identifier)
                server.submit(functools.partial(self._delete, server))
                server.retire()
            for identifier, spec in wanted.items():
                found = self._servers.get(identifier)
                if found is None:
                    server = self._servers[identifier] = _Server(spec, self.root / identifier)
                    if spec.status == "stopped":
                        server.state = "stopped"
                    else:
                        server.submit(functools.partial(self._start, server))
                    continue
                server = found
                previous, server.spec = server.spec, spec
                if spec.status == "stopped" and server.state == "running":
                    server.state = "stopped"
                    server.submit(functools.partial(self._stop, server))
                elif spec.status != "stopped" and server.state == "stopped":
                    server.state = "starting"
                    server.submit(functools.partial(self._start, server))
                elif server.state == "running" and spec.password != previous.password:
                    server.submit(functools.partial(self._set_password, server))

    def captured(self) -> set[str]:
        """The snapshots whose data is complete (see :func:`mark_snapshots`)."""
        with self._lock:
            return set(self._captured)

    def ports(self) -> dict[str, int]:
        with self._lock:
            return {i: s.spec.port for i, s in self._servers.items()}

    def describe(self) -> list[DatabaseInfo]:
        with self._lock:
            return [DatabaseInfo(i, s.spec.port, s.state, s.detail) for i, s in sorted(self._servers.items())]

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop every server once its queued work is done (their data stays, for the next start)."""
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.submit(functools.partial(self._stop, server, timeout_s))
            server.retire()
        for server in servers:
            server.join(timeout_s + START_TIMEOUT_S)

    # --- one server's jobs ---

    def _start(self, server: _Server) -> None:
        spec = server.spec
        server.folder.mkdir(parents=True, exist_ok=True)
        self._own(server.folder)
        if not (server.data / "PG_VERSION").exists():
            if spec.source is None:
                self._initdb(server)
            else:
                self._restore(server, *spec.source)
        server.socket_dir.mkdir(exist_ok=True)
        self._own(server.socket_dir)
        _stop_leftover(server.data / "postmaster.pid")
        with (server.folder / "postgres.log").open("ab") as log_file:
            server.process = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(server.data), "-p", str(spec.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={server.socket_dir}"],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **self._as_user(),
            )  # fmt: skip
        self._wait_ready(server)
        self._set_password(server)
        if spec.db_name:
            self._create_database(server, spec.db_name)
        server.state, server.detail = "running", ""
        log.info("database %s: PostgreSQL serving on 127.0.0.1:%d", spec.identifier, spec.port)

    def _initdb(self, server: _Server) -> None:
        password_file = server.folder / "initial-password"
        password_file.write_text(server.spec.password or "unset")
        self._own(password_file)
        try:
            self._run(
                [str(self._bin / "initdb"), "-D", str(server.data), "-U", server.spec.username,
                 f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=trust",
                 "--encoding=UTF8", "--no-sync"],
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)

    def _capture(self, server: _Server, snapshot_id: str) -> None:
        """Keep the instance's data as it is now under the snapshot's id: an online backup of a
        running server (``pg_basebackup``, consistent), a copy of a stopped one's folder."""
        folder = self.root / SNAPSHOTS / snapshot_id
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        self._own(folder)
        self._copy_data(server, folder / "data")
        (folder / COMPLETE).write_text(server.spec.identifier)
        with self._lock:
            self._captured.add(snapshot_id)
        log.info("database %s: snapshot %s taken", server.spec.identifier, snapshot_id)

    def _restore(self, server: _Server, kind: str, source: str) -> None:
        """A restored instance's data: its snapshot's, or (point in time) its source instance's as
        it is now: the sandbox keeps no write-ahead log to replay to an earlier time."""
        if kind == "snapshot":
            folder = self.root / SNAPSHOTS / source
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (folder / COMPLETE).exists():  # a snapshot taken moments ago may be copying
                if time.monotonic() > deadline:
                    raise RuntimeError(f"snapshot {source} has no data in the sandbox")
                time.sleep(0.2)
            self._run(["cp", "-a", str(folder / "data"), str(server.data)])
        else:
            with self._lock:
                origin = self._servers.get(source)
            if origin is None:
                raise RuntimeError(f"instance {source} has no data in the sandbox")
            self._copy_data(origin, server.data)
        log.info("database %s: restored from %s %s", server.spec.identifier, kind, source)

    def _copy_data(self, server: _Server, target: Path) -> None:
        if server.process is not None and server.process.poll() is None:
            self._run(
                [str(self._bin / "pg_basebackup"), "-D", str(target), "-h", str(server.socket_dir),
                 "-p", str(server.spec.port), "-U", server.spec.username, "-X", "stream", "-c", "fast"],
            )  # fmt: skip
        else:
            self._run(["cp", "-a", str(server.data), str(target)])
            (target / "postmaster.pid").unlink(missing_ok=True)

    def _wait_ready(self, server: _Server) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.process is not None and server.process.poll() is not None:
                code = server.process.returncode
                raise RuntimeError(f"postgres exited with {code}; see {server.folder}/postgres.log")
            where = ["-h", str(server.socket_dir), "-p", str(server.spec.port)]
            ready = subprocess.run([str(self._bin / "pg_isready"), *where, "-q"], check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres did not accept connections within {START_TIMEOUT_S:g} s")
            time.sleep(0.1)

    def _set_password(self, server: _Server) -> None:
        password = server.spec.password
        if not password or password == server.password_set:
            return
        quoted = password.replace("'", "''")
        role = server.spec.username.replace('"', '""')
        self._sql(server, f"ALTER ROLE \"{role}\" WITH PASSWORD '{quoted}'")
        server.password_set = password
        log.info("database %s: the master user's password set from its secret", server.spec.identifier)

    def _create_database(self, server: _Server, name: str) -> None:
        exists = self._sql(server, f"SELECT 1 FROM pg_database WHERE datname = '{name.replace(chr(39), '')}'")
        if exists.strip() != "1":
            self._sql(server, f'CREATE DATABASE "{name.replace(chr(34), "")}"')

    def _sql(self, server: _Server, statement: str) -> str:
        done = subprocess.run(
            [str(self._bin / "psql"), "-h", str(server.socket_dir), "-p", str(server.spec.port),
             "-U", server.spec.username, "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout

    def _stop(self, server: _Server, timeout_s: float = 20.0) -> None:
        process, server.process = server.process, None
        if process is None:
            _stop_leftover(server.data / "postmaster.pid")
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)  # "fast" shutdown: clients disconnected, data flushed
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.password_set = ""
        log.info("database %s: PostgreSQL stopped", server.spec.identifier)

    def _delete(self, server: _Server) -> None:
        self._stop(server)
        shutil.rmtree(server.folder, ignore_errors=True)
        shutil.rmtree(server.socket_dir, ignore_errors=True)
        log.info("database %s: deleted with its data", server.spec.identifier)

    # --- running as root ---

    def _as_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        uid, gid = self._user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _run(self, command: list[str]) -> None:
        subprocess.run(command, check=True, capture_output=True, **self._as_user())

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, *self._user)
            path.chmod(0o700 if path.is_dir() else 0o600)


def _system_user() -> tuple[int, int]:
    """(uid, gid) of :data:`SYSTEM_USER`, made on first use (the sandbox runs as root)."""
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _stop_leftover(pid_file: Path) -> None:
    """Stop a postgres that an earlier, killed service left running on this data folder."""
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"postgres" not in cmdline:  # a reused pid: not ours
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
