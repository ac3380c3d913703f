"""The release app: the small web service that the blue and green fleets run.

Endpoints:

- ``GET /``: JSON with the color, version, instance id and host that answered.
- ``GET /health/live``: the process is up; touches nothing, so it never fails while serving.
- ``GET /health/ready``: 200 when this instance should get traffic; 503 while starting, while
  draining after SIGTERM, or when the release's fault profile fails it.
- ``GET /version``: the release manifest (version, build time, git commit, faults).
- ``GET /work?ms=N``: N milliseconds of CPU work (0..MAX_WORK_MS), for load tests.
- With a database only: ``POST /orders`` (JSON ``{"item": "kettle"}``) stores an order and answers
  201 with it (``id``, ``item``, ``written_by``: the release version that stored it,
  ``created_at``) and the usual identity; ``GET /orders/ID`` answers the same, or 404. Database
  errors answer 500 with the error. ``/health/ready`` also checks the database (``SELECT 1``).

Settings (environment, or the ``config`` mapping of :func:`create_app`):

- ``APP_COLOR`` / ``COLOR``: blue or green, required: a fleet that does not know its color
  would mislabel every answer.
- ``APP_INSTANCE_ID`` / ``INSTANCE_ID``: the EC2 instance id; default: the host name.
- ``APP_RELEASE_FILE`` / ``RELEASE_FILE``: the release.json; default: the one next to this
  package, at the artifact root.
- ``APP_VERSION`` / ``VERSION``: optional; when set (the fleet's user data sets it), it must
  match release.json's version, so an instance never serves an artifact it was not launched for.

The database (optional; without ``DATABASE_SECRET_ARN`` the app has none and no /orders routes):

- ``DATABASE_SECRET_ARN``: the RDS-managed secret (JSON ``username``, ``password``), read with
  boto3 at start and again when the database refuses the password (a rotation).
- ``DATABASE_HOST``, ``DATABASE_NAME``, ``DATABASE_PORT`` (default 5432): the RDS instance's
  endpoint and database; ``DATABASE_SSLMODE`` (default ``prefer``).
- Secrets Manager is reached as boto3 reaches it: credentials from its chain (the instance role
  on EC2, which needs secretsmanager:GetSecretValue on the secret and kms:Decrypt on its key),
  region from ``AWS_REGION`` or else the secret's ARN, ``AWS_ENDPOINT_URL`` (the sandbox).
- The pool holds ``APP_THREADS`` connections per gunicorn worker (one per thread), so an
  instance opens at most ``APP_WORKERS`` x ``APP_THREADS`` (8 by default).
- The schema: the revision the release names (release.json ``schema``, see app/release.py);
  the app does not migrate, ``python -m app.migrations upgrade`` does (app/migrations/).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from .release import Release, load_release

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .database import Orders

#: Upper bound of GET /work, so one request cannot hold a worker thread for long and always
#: finishes inside gunicorn's graceful_timeout.
MAX_WORK_MS = 5_000
COLORS = ("blue", "green")
#: Where the app keeps its :class:`AppState` in ``app.extensions`` (the gunicorn hooks find it there).
STATE_KEY = "bluegreen"


class AppConfigError(ValueError):
    """The app's settings cannot be used; the message says which and what to set."""


def default_release_file() -> Path:
    """``APP_RELEASE_FILE``, or release.json beside the ``app`` package (the artifact root)."""
    configured = os.environ.get("APP_RELEASE_FILE", "").strip()
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "release.json"


class AppState:
    """What one app process knows: its release, color and instance, its start and drain state."""

    def __init__(
        self,
        release: Release,
        color: str,
        instance_id: str,
        rng: random.Random,
        database: tuple[Engine, Orders] | None = None,
    ) -> None:
        self.release = release
        #: The engine and the orders table, when the app has a database.
        self.database = database
        self.color = color
        self.instance_id = instance_id
        self.host = socket.gethostname()
        self.rng = rng
        self.started = time.monotonic()
        self._draining = threading.Event()

    def begin_drain(self) -> None:
        """Readiness answers 503 from now on; everything else keeps being served."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def not_ready_reason(self) -> tuple[str, str] | None:
        """(status, why) when readiness must fail, None when ready."""
        if self.draining:
            return "draining", "SIGTERM received: finishing in-flight requests before stopping"
        if self.release.faults.ready == "fail":
            return "failing", "the release's fault profile sets ready=fail"
        remaining = self.release.faults.start_delay_s - (time.monotonic() - self.started)
        if remaining > 0:
            return "starting", f"start_delay_s fault: ready in {remaining:.1f} s"
        return None

    def identity(self) -> dict[str, str]:
        return {
            "color": self.color,
            "version": self.release.version,
            "instance_id": self.instance_id,
            "host": self.host,
        }


def app_state(flask_app: Flask) -> AppState:
    """The :class:`AppState` of an app made by :func:`create_app`."""
    state = flask_app.extensions[STATE_KEY]
    assert isinstance(state, AppState)
    return state


def _setting(config: Mapping[str, Any], key: str, env: str, default: str | None = None) -> str | None:
    value = config.get(key)
    if value is None:
        value = os.environ.get(env, "").strip() or default
    return None if value is None else str(value)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask app. A missing or malformed release.json, or a bad color, stops it here.

    ``config`` overrides the environment (tests pass ``COLOR``, ``RELEASE_FILE``, ...);
    ``FAULT_SEED`` seeds the error_rate draws so a test can count them.
    """
    config = dict(config or {})
    color = _setting(config, "COLOR", "APP_COLOR")
    if color not in COLORS:
        raise AppConfigError(
            f"APP_COLOR must be one of {', '.join(COLORS)}, got {color!r}: "
            "set it in the environment (the fleet's user data does) so every answer names its color."
        )
    instance_id = _setting(config, "INSTANCE_ID", "APP_INSTANCE_ID", socket.gethostname())
    release_file = Path(config.get("RELEASE_FILE") or default_release_file())
    release = load_release(release_file)  # raises ReleaseFileError naming the file and the problem
    expected_version = _setting(config, "VERSION", "APP_VERSION")
    if expected_version is not None and expected_version != release.version:
        raise AppConfigError(
            f"APP_VERSION is {expected_version!r} but {release_file} is release {release.version!r}: "
            "this artifact is not the release the instance was launched for; fetch the right one."
        )

    database = _open_database(config, release)
    flask_app = Flask(__name__)
    flask_app.config.from_mapping(config)
    state = AppState(release, color, str(instance_id), random.Random(config.get("FAULT_SEED")), database)
    flask_app.extensions[STATE_KEY] = state
    _add_routes(flask_app, state)
    if database is not None:
        _add_order_routes(flask_app, state, database[1])
    return flask_app


def _open_database(config: Mapping[str, Any], release: Release) -> tuple[Engine, Orders] | None:
    """The engine and orders table when DATABASE_SECRET_ARN is set; None otherwise. The database
    modules load only then, so an app without a database runs without their packages."""
    if _setting(config, "DATABASE_SECRET_ARN", "DATABASE_SECRET_ARN") is None:
        return None
    from .database import Orders, SecretCredentials, database_settings, make_engine

    try:
        settings = database_settings(lambda key: _setting(config, key, key))
    except ValueError as exc:
        raise AppConfigError(str(exc)) from None
    assert settings is not None
    try:
        credentials = SecretCredentials(settings)
    except Exception as exc:  # boto3's errors share no base class with ValueError's
        raise AppConfigError(
            f"Cannot read the database secret {settings.secret_id}: {exc}. The instance's role needs "
            "secretsmanager:GetSecretValue on it (and kms:Decrypt on its key); the region comes from "
            "AWS_REGION or the secret's ARN."
        ) from exc
    engine = make_engine(settings, credentials)
    return engine, Orders(engine, release.revision, release.version)


_MS_PATTERN = re.compile(r"^\d+$")


def _parse_ms(raw: str | None) -> tuple[int | None, str]:
    """(ms, "") when ``raw`` is a valid N for /work, else (None, why not)."""
    usage = f"use /work?ms=N with N a whole number of milliseconds from 0 to {MAX_WORK_MS}"
    if raw is None:
        return None, f"ms is missing: {usage}"
    if not _MS_PATTERN.match(raw):
        return None, f"ms={raw!r} is not a whole number: {usage}"
    if len(raw) > len(str(MAX_WORK_MS)) or int(raw) > MAX_WORK_MS:
        return None, f"ms={raw} is above {MAX_WORK_MS}, the limit that keeps requests short: {usage}"
    return int(raw), ""


def _burn_cpu(ms: int) -> int:
    """Hash in a loop for ``ms`` milliseconds of wall time; returns the rounds done."""
    deadline = time.perf_counter() + ms / 1000
    digest, rounds = b"bluegreen", 0
    while time.perf_counter() < deadline:
        for _ in range(100):
            digest = hashlib.sha256(digest).digest()
        rounds += 100
    return rounds


def _add_routes(flask_app: Flask, state: AppState) -> None:
    @flask_app.get("/")
    def index() -> tuple[Response, int]:
        faults = state.release.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.error_rate and state.rng.random() < faults.error_rate:
            return jsonify(error=f"injected fault: error_rate={faults.error_rate:g}", **state.identity()), 500
        return jsonify(state.identity()), 200

    @flask_app.get("/health/live")
    def live() -> tuple[Response, int]:
        return jsonify(status="live"), 200

    @flask_app.get("/health/ready")
    def ready() -> tuple[Response, int]:
        reason = state.not_ready_reason() or _database_down(state)
        if reason is not None:
            status, why = reason
            return jsonify(status=status, reason=why, **state.identity()), 503
        return jsonify(status="ready", **state.identity()), 200

    @flask_app.get("/version")
    def version() -> tuple[Response, int]:
        return jsonify(state.release.as_dict()), 200

    @flask_app.get("/work")
    def work() -> tuple[Response, int]:
        ms, why = _parse_ms(request.args.get("ms"))
        if ms is None:
            return jsonify(error=why), 400
        started = time.perf_counter()
        rounds = _burn_cpu(ms)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return jsonify(ms=ms, rounds=rounds, elapsed_ms=round(elapsed_ms, 1), **state.identity()), 200


def _error_line(exc: BaseException) -> str:
    """The exception's class and first line: enough to tell the failures apart in a probe's rows."""
    cause = exc.__cause__ or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]


def _database_down(state: AppState) -> tuple[str, str] | None:
    """("database", why) when the app has a database that does not answer ``SELECT 1``."""
    if state.database is None:
        return None
    from .database import check

    try:
        check(state.database[0])
    except Exception as exc:  # whatever the driver raises, the instance must not get traffic
        return "database", f"the database does not answer: {_error_line(exc)}"
    return None


def _add_order_routes(flask_app: Flask, state: AppState, orders: Orders) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from .database import check_item

    @flask_app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError) -> tuple[Response, int]:
        return jsonify(error=f"database: {_error_line(exc)}", **state.identity()), 500

    @flask_app.post("/orders")
    def add_order() -> tuple[Response, int]:
        item, why = check_item(request.get_json(silent=True))
        if item is None:
            return jsonify(error=why), 400
        order = orders.add(item)
        response = jsonify(**order.as_dict(), **state.identity())
        response.headers["Location"] = f"/orders/{order.id}"
        return response, 201

    @flask_app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> tuple[Response, int]:
        order = orders.get(order_id)
        if order is None:
            return jsonify(error=f"no order {order_id}", **state.identity()), 404
        return jsonify(**order.as_dict(), **state.identity()), 200
