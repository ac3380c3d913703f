"""The app's optional database: settings, credentials from Secrets Manager, the engine, the orders.

The app has a database when ``DATABASE_SECRET_ARN`` is set (see :func:`database_settings` for the
whole interface). At start each gunicorn worker reads the master user's credentials from the
RDS-managed secret (JSON with ``username`` and ``password``) through boto3's usual chain (the
instance role on EC2), and builds a SQLAlchemy engine on psycopg 3 whose pool holds one connection
per gunicorn thread.

Rotation: a running connection keeps working when the password changes; a new one is refused with
the old password. Then :class:`SecretCredentials` reads the secret again (``AWSCURRENT``, and
``AWSPENDING``: during an RDS rotation the database has the new password before the secret's
current version moves to it; ``AWSPREVIOUS`` for the opposite order) and connects with what it
holds, so the request that needed the connection never sees the change.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text

log = logging.getLogger(__name__)

#: Seconds to open a connection (libpq's least is 2). A request or a readiness check waits at most
#: this long for a database that does not answer.
CONNECT_TIMEOUT_S = 2
#: Seconds a request waits for a free pooled connection before it fails.
POOL_TIMEOUT_S = 5.0
#: libpq's sslmode: "prefer" uses TLS where the server offers it (RDS for PostgreSQL 15+ requires
#: it) and plain TCP where it does not (the sandbox's servers).
DEFAULT_SSLMODE = "prefer"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
MAX_ITEM_CHARS = 200
#: gunicorn.conf.py's default for APP_THREADS, so that the pool matches the threads when unset.
DEFAULT_THREADS = 4


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is and which secret holds its credentials."""

    secret_id: str
    host: str
    port: int
    name: str
    sslmode: str = DEFAULT_SSLMODE
    #: Connections per gunicorn worker: one per thread, so a request never waits for one.
    pool_size: int = DEFAULT_THREADS

    @property
    def region(self) -> str | None:
        """The region in the secret's ARN (``arn:aws:secretsmanager:REGION:...``), else None: EC2
        sets no AWS_REGION, and the secret is in the database's region."""
        parts = self.secret_id.split(":")
        return parts[3] if len(parts) > 6 and parts[0] == "arn" and parts[3] else None


def database_settings(get: Callable[[str], str | None]) -> DatabaseSettings | None:
    """The database settings from ``get`` (the app's config, then the environment); None without a
    database. ValueError naming the setting when one is missing or malformed.

    - ``DATABASE_SECRET_ARN``: the RDS-managed secret (ARN or name); its absence means no database.
    - ``DATABASE_HOST``, ``DATABASE_PORT`` (default 5432), ``DATABASE_NAME``: the instance's
      endpoint and database (the RDS API's Endpoint and DBName).
    - ``DATABASE_SSLMODE``: libpq's sslmode, default ``prefer``.
    - ``APP_THREADS``: gunicorn's threads per worker (gunicorn.conf.py), the pool's size.
    - Region, endpoint and credentials of Secrets Manager: boto3's own (``AWS_REGION``, else the
      ARN's region; ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_SECRETS_MANAGER``; the instance role).
    """
    secret_id = get("DATABASE_SECRET_ARN")
    if not secret_id:
        return None
    host, name = get("DATABASE_HOST"), get("DATABASE_NAME")
    missing = [key for key, value in (("DATABASE_HOST", host), ("DATABASE_NAME", name)) if not value]
    if missing:
        raise ValueError(
            f"DATABASE_SECRET_ARN is set but {' and '.join(missing)} not: set the database's endpoint "
            "address and name too (the RDS API's Endpoint.Address and DBName)."
        )
    sslmode = get("DATABASE_SSLMODE") or DEFAULT_SSLMODE
    if sslmode not in SSLMODES:
        raise ValueError(f"DATABASE_SSLMODE must be one of {', '.join(SSLMODES)}, got {sslmode!r}.")
    assert host is not None and name is not None
    return DatabaseSettings(
        secret_id=secret_id,
        host=host,
        port=_whole("DATABASE_PORT", get("DATABASE_PORT") or "5432", 1, 65535),
        name=name,
        sslmode=sslmode,
        pool_size=_whole("APP_THREADS", get("APP_THREADS") or str(DEFAULT_THREADS), 1, 256),
    )


def _whole(key: str, raw: str, low: int, high: int) -> int:
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, got {raw!r}.")
    return int(raw)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class SecretCredentials:
    """The database credentials in a Secrets Manager secret, read at start and again when the
    database refuses them (:meth:`connect`)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        import boto3

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or settings.region
        self._client = boto3.client("secretsmanager", region_name=region)
        self._secret_id = settings.secret_id
        self._lock = threading.Lock()
        #: Secret reads so far (a rotation adds some), for tests and logs.
        self.reads = 0
        current = self._read("AWSCURRENT")
        if current is None:
            raise ValueError(f"the secret {self._secret_id} has no current value")
        self.current = current

    def _read(self, stage: str) -> Credentials | None:
        """The credentials in ``stage`` of the secret; None when the stage does not exist."""
        try:
            value = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
        except self._client.exceptions.ResourceNotFoundException:
            if stage == "AWSCURRENT":
                raise
            return None
        finally:
            self.reads += 1
        data = json.loads(value.get("SecretString") or "{}")
        if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
            raise ValueError(f"the secret {self._secret_id} ({stage}) lacks a username or a password")
        return Credentials(str(data["username"]), str(data["password"]))

    def connect(self, open_: Callable[[Credentials], psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        """``open_(credentials)``; when the database refuses them, read the secret again and open
        with what it holds now: current, then pending, then previous (a secret that changed before
        the database's password did, as the sandbox applies a rotation)."""
        used = self.current
        try:
            return open_(used)
        except psycopg.OperationalError as exc:
            if not authentication_failed(exc):
                raise
            refused = exc
        try:
            candidates = self._fresh()
        except Exception:  # the refusal is the error to report; the secret's failure goes to the log
            log.exception("database: cannot read the secret %s again", self._secret_id)
            raise refused from None
        for candidate in candidates:
            if candidate == used:
                continue
            try:
                connection = open_(candidate)
            except psycopg.OperationalError as exc:
                if not authentication_failed(exc):
                    raise
                continue
            log.warning("database: the password changed; connected with the secret's new value")
            self.current = candidate
            return connection
        raise refused

    def _fresh(self) -> list[Credentials]:
        with self._lock:  # one thread reads at a time; the others then find the new value set
            found = [self._read(stage) for stage in ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")]
        return [c for c in found if c is not None]


def authentication_failed(exc: psycopg.OperationalError) -> bool:
    """Whether the server refused the credentials. psycopg gives no SQLSTATE for a failed connect,
    so the server's message (28P01, "password authentication failed"; PAM for IAM) tells."""
    return "authentication failed" in str(exc)


def make_engine(settings: DatabaseSettings, credentials: SecretCredentials) -> Engine:
    """A pooled engine whose new connections use the secret's credentials as they are now."""

    def open_(c: Credentials) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=settings.host,
            port=settings.port,
            dbname=settings.name,
            user=c.username,
            password=c.password,
            sslmode=settings.sslmode,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="bluegreen-app",
        )

    return create_engine(
        "postgresql+psycopg://",
        creator=lambda: credentials.connect(open_),
        pool_size=settings.pool_size,
        # A thread holds at most one connection, so the pool never needs more than one per thread.
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        # A pooled connection that died (a restarted or failed-over database) is replaced before
        # a request gets it, instead of failing that request.
        pool_pre_ping=True,
    )


def check(engine: Engine) -> None:
    """A cheap round trip (``SELECT 1``); raises what the connection raises."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@dataclass(frozen=True)
class Order:
    id: int
    item: str
    written_by: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "item": self.item,
            "written_by": self.written_by,
            "created_at": self.created_at.isoformat(),
        }


#: What each schema revision's code writes and reads for an order's item (app/release.py's SCHEMAS):
#: the columns it inserts, and the expression it selects.
SHAPES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "0001": (("item",), "item"),
    "0002": (("item", "product"), "COALESCE(product, item)"),
    "0003": (("product",), "product"),
    "0002_onestep": (("product",), "product"),
}


class Orders:
    """The orders table as the code of schema ``revision`` uses it; ``version`` is the release's."""

    def __init__(self, engine: Engine, revision: str, version: str) -> None:
        self._engine = engine
        columns, self._item = SHAPES[revision]
        self._insert = text(
            f"INSERT INTO orders ({', '.join(columns)}, release_version) "
            f"VALUES ({', '.join(':item' for _ in columns)}, :version) "
            f"RETURNING id, {self._item}, release_version, created_at"
        )
        self._select = text(
            f"SELECT id, {self._item}, release_version, created_at FROM orders WHERE id = :id"
        )
        self._version = version

    def add(self, item: str) -> Order:
        with self._engine.begin() as connection:
            row = connection.execute(self._insert, {"item": item, "version": self._version}).one()
        return Order(*row)

    def get(self, order_id: int) -> Order | None:
        with self._engine.connect() as connection:
            row = connection.execute(self._select, {"id": order_id}).one_or_none()
        return None if row is None else Order(*row)


def check_item(body: object) -> tuple[str | None, str]:
    """(item, "") from a POST /orders JSON body, else (None, why not)."""
    usage = f'send JSON such as {{"item": "kettle"}}, item a string of 1 to {MAX_ITEM_CHARS} characters'
    if not isinstance(body, dict) or "item" not in body:
        return None, f"the body holds no item: {usage}"
    item = body["item"]
    if not isinstance(item, str) or not 1 <= len(item) <= MAX_ITEM_CHARS or "\x00" in item:
        return None, f"item {item!r} is not usable: {usage}"
    return item, ""
