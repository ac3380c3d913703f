"""The app's database settings, the release's schema and migration fault, and the migrations'
revisions: everything about issue 15's app that needs no database (tests/integration/
test_app_database.py runs it on a real PostgreSQL)."""

from __future__ import annotations

import json
import runpy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from app import AppConfigError, create_app
from app.database import DEFAULT_THREADS, SHAPES, DatabaseSettings, check_item, database_settings
from app.migrations import history
from app.release import FIRST_SCHEMA, ONE_STEP_SCHEMA, SCHEMAS, ReleaseFileError, load_release
from labkit.release.build import build_release, read_artifact_manifest
from labkit.settings import PROJECT_ROOT, app_dir

MANIFEST: dict[str, Any] = {"version": "1.1.0", "build_time": "2025-01-31T12:00:00Z", "git_commit": "abc"}
ENDPOINT = {"DATABASE_HOST": "db.example", "DATABASE_NAME": "orders"}
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1a2b-AbCdEf"


def release_file(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "release.json"
    path.write_text(json.dumps({**MANIFEST, **extra}))
    return path


def test_a_release_runs_on_the_first_schema_unless_it_names_another(tmp_path: Path) -> None:
    first = load_release(release_file(tmp_path))
    assert (first.schema, first.revision) == (FIRST_SCHEMA, "0001")
    assert "schema" not in first.as_dict()  # manifests without a database stay as they were
    expand = load_release(release_file(tmp_path, schema="0002"))
    assert expand.revision == "0002" and expand.as_dict()["schema"] == "0002"


def test_the_one_step_migration_fault_replaces_step_0002(tmp_path: Path) -> None:
    bad = load_release(release_file(tmp_path, schema="0002", faults={"migration": "one_step"}))
    assert bad.revision == ONE_STEP_SCHEMA
    assert bad.as_dict()["faults"] == {"migration": "one_step"}
    with pytest.raises(ReleaseFileError, match="must be 0002, got '0003'"):
        load_release(release_file(tmp_path, schema="0003", faults={"migration": "one_step"}))
    with pytest.raises(ReleaseFileError, match="migration must be one of none, one_step"):
        load_release(release_file(tmp_path, schema="0002", faults={"migration": "rename"}))
    with pytest.raises(ReleaseFileError, match="schema must be one of 0001, 0002, 0003, got '0004'"):
        load_release(release_file(tmp_path, schema="0004"))


def test_labkit_builds_a_release_on_a_schema(tmp_path: Path) -> None:
    artifact = build_release("1.1.0", {"migration": "one_step"}, tmp_path, schema="0002")
    manifest = read_artifact_manifest(artifact)
    assert (manifest["schema"], manifest["faults"]) == ("0002", {"migration": "one_step"})


def test_each_schema_has_one_revision_and_code_that_runs_on_it() -> None:
    revisions = {r.revision: r.down_revision for r in history()}
    assert revisions == {"0001": None, "0002": "0001", "0003": "0002", ONE_STEP_SCHEMA: "0001"}
    assert set(SHAPES) == set(SCHEMAS) | {ONE_STEP_SCHEMA}


def test_the_instances_install_what_pyproject_declares_for_the_app() -> None:
    """app/requirements.txt (what EC2 installs) and pyproject.toml (the sandbox's venv) agree."""
    lines = (app_dir() / "requirements.txt").read_text().splitlines()
    wanted = {str(Requirement(line)) for line in lines if line.strip() and not line.startswith("#")}
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert wanted and wanted <= {str(Requirement(d)) for d in declared}


def settings_from(values: dict[str, str]) -> DatabaseSettings | None:
    return database_settings(values.get)


def test_the_pool_has_as_many_connections_as_gunicorn_has_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_THREADS", raising=False)
    threads = runpy.run_path(str(app_dir() / "gunicorn.conf.py"))["threads"]
    settings = settings_from({"DATABASE_SECRET_ARN": ARN, **ENDPOINT})
    assert settings is not None and settings.pool_size == threads == DEFAULT_THREADS


def test_no_secret_means_no_database() -> None:
    assert settings_from(ENDPOINT) is None


def test_settings_with_defaults_and_the_region_from_the_arn() -> None:
    settings = settings_from({"DATABASE_SECRET_ARN": ARN, **ENDPOINT, "APP_THREADS": "8"})
    assert settings == DatabaseSettings(ARN, "db.example", 5432, "orders", "prefer", pool_size=8)
    assert settings.region == "eu-west-1"
    assert DatabaseSettings("my-secret-name", "h", 1, "n").region is None


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"DATABASE_SECRET_ARN": ARN}, "DATABASE_HOST and DATABASE_NAME not"),
        ({"DATABASE_SECRET_ARN": ARN, "DATABASE_HOST": "h"}, "DATABASE_NAME not"),
        ({"DATABASE_SECRET_ARN": ARN, **ENDPOINT, "DATABASE_PORT": "5432x"}, "DATABASE_PORT must be"),
        ({"DATABASE_SECRET_ARN": ARN, **ENDPOINT, "DATABASE_PORT": "0"}, "from 1 to 65535"),
        ({"DATABASE_SECRET_ARN": ARN, **ENDPOINT, "DATABASE_SSLMODE": "on"}, "DATABASE_SSLMODE must"),
    ],
)
def test_bad_database_settings_stop_the_app_naming_the_setting(
    tmp_path: Path, values: dict[str, str], problem: str
) -> None:
    with pytest.raises(AppConfigError, match=problem):
        create_app({"COLOR": "blue", "RELEASE_FILE": release_file(tmp_path), **values})


def test_without_a_database_there_are_no_order_routes(tmp_path: Path) -> None:
    client = create_app({"COLOR": "blue", "RELEASE_FILE": release_file(tmp_path)}).test_client()
    assert client.post("/orders", json={"item": "kettle"}).status_code == 404
    assert client.get("/orders/1").status_code == 404
    assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("body", "item"),
    [({"item": "kettle"}, "kettle"), ({"item": ""}, None), ({"item": 3}, None), ([], None), (None, None)],
)
def test_an_order_needs_an_item_of_text(body: object, item: str | None) -> None:
    found, why = check_item(body)
    assert found == item
    assert (why == "") == (item is not None)
