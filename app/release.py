"""The release manifest (``release.json``): its schema and its one validator.

A release is the ``app`` package plus ``release.json`` at the artifact root::

    {"version": "1.2.0", "build_time": "2025-01-31T12:00:00+00:00", "git_commit": "3f2a...",
     "faults": {"error_rate": 0.3}}

``faults`` is optional; it breaks the release on purpose for lessons (see :data:`FAULTS`).
``schema`` is optional: the database schema revision the release's code is written for and
migrates to (see :data:`SCHEMAS`; default :data:`FIRST_SCHEMA`). It matters only when the app
runs with a database.

This module ships inside the release (the app runs on EC2 without labkit) and uses only the
standard library; labkit loads this same file by path, so the schema is defined once, here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Union

#: MAJOR.MINOR.PATCH with an optional -suffix; the version also names the S3 key of the artifact,
#: so the suffix keeps to characters that are safe there and in Terraform variables.
VERSION_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z][0-9A-Za-z.-]*)?$")

#: Added latency is capped so a request always finishes well inside gunicorn's graceful_timeout.
MAX_LATENCY_MS = 10_000
MAX_START_DELAY_S = 300.0
READY_VALUES = ("ok", "fail")

MANIFEST_KEYS = ("version", "build_time", "git_commit", "faults", "schema")

#: The schema revisions (app/migrations/versions/), one per release that changes the schema, named
#: by a four-digit step number; each release names in ``schema`` the one its code runs on. Steps
#: 0002 and 0003 rename ``orders.item`` to ``orders.product`` as expand then contract, so the
#: releases on either side of each step can run against the same database at once.
SCHEMAS = {
    "0001": "orders(id, item, release_version, created_at)",
    "0002": "expand: adds orders.product, copies item into it and keeps the two in step; the code "
    "writes both",
    "0003": "contract: drops orders.item; the code writes product only (deploy it once no release "
    "on 0001 runs)",
}
FIRST_SCHEMA = "0001"
#: The revision the ``migration=one_step`` fault runs instead of step 0002: ``orders.item`` renamed
#: to ``product`` in one ALTER, which the previous release's code cannot write to.
ONE_STEP_SCHEMA = "0002_onestep"
MIGRATION_VALUES = ("none", "one_step")


class ReleaseFileError(ValueError):
    """``release.json`` cannot be used; the message names the file and the problem."""


# Union, not float | int | str: this alias is evaluated at run time, and the instances' Python is
# Amazon Linux 2023's 3.9, which has no | between types.
FaultValue = Union[float, int, str]  # noqa: UP007


@dataclass(frozen=True)
class FaultSpec:
    """One fault key: the values it ``accepts``, what it ``does``, its checker and its text parser.

    ``check`` returns the value in its stored type, or raises ValueError (any message: the
    caller words the error from ``accepts``).
    """

    accepts: str
    does: str
    check: Callable[[object], FaultValue]
    from_text: Callable[[str], object]


def _number(value: object, low: float, high: float, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    if integer and not isinstance(value, int):
        raise ValueError("not an integer")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError("out of range")
    return value


def _choice(value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError("not one of the choices")
    return str(value)


def _ready(value: object) -> str:
    return _choice(value, READY_VALUES)


#: The fault profile keys, for lessons that break a release on purpose.
FAULTS: dict[str, FaultSpec] = {
    "error_rate": FaultSpec(
        "a number from 0 to 1",
        "the share of GET / that answers 500",
        lambda v: float(_number(v, 0, 1)),
        float,
    ),
    "latency_ms": FaultSpec(
        f"an integer from 0 to {MAX_LATENCY_MS}",
        "milliseconds added to every GET /",
        lambda v: int(_number(v, 0, MAX_LATENCY_MS, integer=True)),
        int,
    ),
    "ready": FaultSpec(
        f"one of {', '.join(READY_VALUES)}",
        "fail makes GET /health/ready answer 503",
        _ready,
        str,
    ),
    "migration": FaultSpec(
        f"one of {', '.join(MIGRATION_VALUES)}",
        f"one_step (with schema 0002) migrates by renaming orders.item in one step ({ONE_STEP_SCHEMA}), "
        "which breaks the previous release",
        lambda v: _choice(v, MIGRATION_VALUES),
        str,
    ),
    "start_delay_s": FaultSpec(
        f"a number from 0 to {MAX_START_DELAY_S:g}",
        "seconds GET /health/ready answers 503 after start",
        lambda v: float(_number(v, 0, MAX_START_DELAY_S)),
        float,
    ),
}


def valid_faults_text() -> str:
    """Every fault key with what it accepts and does, one per line, for error messages."""
    return "\n".join(f"  {key}: {spec.accepts}; {spec.does}" for key, spec in FAULTS.items())


@dataclass(frozen=True)
class Faults:
    """The fault profile of a release; the defaults are a healthy release."""

    error_rate: float = 0.0
    latency_ms: int = 0
    ready: str = "ok"
    start_delay_s: float = 0.0
    migration: str = "none"

    def as_dict(self) -> dict[str, FaultValue]:
        """Only the faults that differ from a healthy release."""
        healthy = Faults()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(healthy, f.name)
        }


@dataclass(frozen=True)
class Release:
    """A validated ``release.json``."""

    version: str
    build_time: str
    git_commit: str
    faults: Faults = Faults()  # frozen, so one shared default is safe
    schema: str = FIRST_SCHEMA

    @property
    def revision(self) -> str:
        """The schema revision this release migrates to and its code runs on."""
        return ONE_STEP_SCHEMA if self.faults.migration == "one_step" else self.schema

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "build_time": self.build_time,
            "git_commit": self.git_commit,
        }
        faults = self.faults.as_dict()
        if faults:
            data["faults"] = faults
        if self.schema != FIRST_SCHEMA:
            data["schema"] = self.schema
        return data


def check_version(version: object) -> str:
    """``version`` when it looks like MAJOR.MINOR.PATCH[-suffix]; ValueError otherwise."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise ValueError(
            f"version must look like MAJOR.MINOR.PATCH or MAJOR.MINOR.PATCH-suffix "
            f"(for example 1.4.0 or 2.0.0-rc.1), got {version!r}"
        )
    return version


def check_schema(schema: object) -> str:
    """``schema`` when it is one of :data:`SCHEMAS`; ValueError otherwise."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, got {schema!r}")
    return str(schema)


def check_fault(key: str, value: object) -> FaultValue:
    """The value of fault ``key`` once checked; ValueError naming the key and what it accepts."""
    spec = _spec(key)
    try:
        return spec.check(value)
    except ValueError:
        raise ValueError(f"fault {key} must be {spec.accepts}, got {value!r}") from None


def fault_from_text(key: str, text: str) -> FaultValue:
    """Fault ``key`` from command-line text such as ``"0.3"``; ValueError like :func:`check_fault`."""
    spec = _spec(key)
    try:
        return spec.check(spec.from_text(text.strip()))
    except ValueError:
        raise ValueError(f"fault {key} must be {spec.accepts}, got {text!r}") from None


def _spec(key: str) -> FaultSpec:
    spec = FAULTS.get(key)
    if spec is None:
        raise ValueError(f"unknown fault key {key!r}; valid keys: {', '.join(FAULTS)}")
    return spec


def faults_from_mapping(values: Mapping[str, object]) -> Faults:
    """A :class:`Faults` from already-typed values (as in JSON); ValueError on the first bad one."""
    return Faults(**{key: check_fault(key, value) for key, value in values.items()})  # type: ignore[arg-type]


def release_from_dict(data: object) -> Release:
    """A :class:`Release` from parsed JSON; ValueError that says which field is wrong and why."""
    if not isinstance(data, dict):
        raise ValueError(f"the top level must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(MANIFEST_KEYS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown key(s) {names}; valid keys: {', '.join(MANIFEST_KEYS)}")
    for key in ("version", "build_time", "git_commit"):
        if key not in data:
            raise ValueError(f"{key!r} is missing; a release.json needs version, build_time and git_commit")
        if not isinstance(data[key], str) or not data[key].strip():
            raise ValueError(f"{key} must be a non-empty string, got {data[key]!r}")
    version = check_version(data["version"])
    try:
        datetime.fromisoformat(data["build_time"])
    except ValueError:
        raise ValueError(
            "build_time must be an ISO 8601 time such as 2025-01-31T12:00:00+00:00, "
            f"got {data['build_time']!r}"
        ) from None
    faults_data = data.get("faults", {})
    if not isinstance(faults_data, dict):
        raise ValueError(f"faults must be a JSON object of fault keys, got {faults_data!r}")
    faults = faults_from_mapping(faults_data)
    schema = check_schema(data.get("schema", FIRST_SCHEMA))
    if faults.migration == "one_step" and schema != "0002":
        raise ValueError(
            f"the migration=one_step fault replaces schema step 0002, so the release's schema must be "
            f"0002, got {schema!r}"
        )
    return Release(
        version=version,
        build_time=data["build_time"],
        git_commit=data["git_commit"],
        faults=faults,
        schema=schema,
    )


def parse_release_json(text: str, source: str) -> Release:
    """A :class:`Release` from the text of a release.json; ReleaseFileError naming ``source``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReleaseFileError(f"{source}: not valid JSON: {exc}") from None
    try:
        return release_from_dict(data)
    except ValueError as exc:
        raise ReleaseFileError(f"{source}: {exc}") from None


def load_release(path: str | Path) -> Release:
    """Read and validate the release.json at ``path``; ReleaseFileError naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReleaseFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_release_json(text, str(path))
