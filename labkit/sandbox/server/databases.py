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
- **Restarts**: data folders outlive the service; ``labkit sandbox up`` starts a server again for
  every instance in the restored state, on its port.

PostgreSQL refuses to run as root. Run as root (CI containers), the servers run as a system user
made for them (:data:`SYSTEM_USER`) and their data lives outside the sandbox's private folder, under
``/var/lib/labkit/postgres/``, since that user cannot traverse a root-only home
(:attr:`labkit.sandbox.client.paths.SandboxPaths.databases_dir`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
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
    )


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


class _Server:
    def __init__(self, spec: DatabaseSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.state: ServerState = "starting"
        self.detail = ""
        self.password_set = ""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "run"


class DatabaseServers:
    """The PostgreSQL servers of the sandbox's RDS instances."""

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
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(root)

    def reconcile(self, wanted: dict[str, DatabaseSpec]) -> None:
        """Start, stop, delete and re-credential servers so they match ``wanted``."""
        with self._lock:
            for identifier in [i for i in self._servers if i not in wanted]:
                server = self._servers.pop(identifier)
                self._spawn(self._delete, server)
            for identifier, spec in wanted.items():
                found = self._servers.get(identifier)
                if found is None:
                    server = self._servers[identifier] = _Server(spec, self.root / identifier)
                    if spec.status == "stopped":
                        server.state = "stopped"
                    else:
                        self._spawn(self._start, server)
                    continue
                server = found
                previous, server.spec = server.spec, spec
                if spec.status == "stopped" and server.state == "running":
                    server.state = "stopped"
                    self._spawn(self._stop, server)
                elif spec.status != "stopped" and server.state == "stopped":
                    server.state = "starting"
                    self._spawn(self._start, server)
                elif server.state == "running" and spec.password != previous.password:
                    self._spawn(self._set_password, server)

    def ports(self) -> dict[str, int]:
        with self._lock:
            return {i: s.spec.port for i, s in self._servers.items()}

    def describe(self) -> list[DatabaseInfo]:
        with self._lock:
            return [DatabaseInfo(i, s.spec.port, s.state, s.detail) for i, s in sorted(self._servers.items())]

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop every server (their data stays, for the next start)."""
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            self._stop(server, timeout_s=timeout_s)

    # --- one server ---

    def _spawn(self, work: Any, server: _Server) -> None:
        threading.Thread(
            target=work, args=(server,), name=f"db-{server.spec.identifier}", daemon=True
        ).start()

    def _start(self, server: _Server) -> None:
        spec = server.spec
        try:
            server.folder.mkdir(parents=True, exist_ok=True)
            self._own(server.folder)
            if not (server.data / "PG_VERSION").exists():
                self._initdb(server)
            server.socket_dir.mkdir(exist_ok=True)
            self._own(server.socket_dir)
            stale = server.data / "postmaster.pid"
            _stop_leftover(stale)
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
        except Exception as exc:  # the reconcile loop must go on; the status says what failed
            server.state, server.detail = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("database %s: could not start PostgreSQL", spec.identifier)

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

    def _wait_ready(self, server: _Server) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.process is not None and server.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {server.process.returncode}; see {server.folder}/postgres.log"
                )
            ready = subprocess.run(
                [
                    str(self._bin / "pg_isready"),
                    "-h",
                    str(server.socket_dir),
                    "-p",
                    str(server.spec.port),
                    "-q",
                ],
                check=False,
            )
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
