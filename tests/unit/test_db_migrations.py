"""`labkit db`: which database and which release an environment's migrations use, and the refusals.

The migrations themselves run against the sandbox's PostgreSQL in
tests/integration/test_sandbox_databases.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.deploy.migrations import EnvironmentDatabase, environment_database, serving_release
from labkit.errors import MigrationError
from labkit.infra.stack import Stack

DATABASE = {
    "identifier": "bglab-staging-db",
    "address": "bglab-staging-db.abc.us-east-1.rds.amazonaws.com",
    "port": 5432,
    "database_name": "orders",
    "master_user_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1-AbCdEf",
    "master_username": "app_admin",
}
BLUE_SERVES = {"blue_version": "1.2.0", "green_version": "1.1.0", "blue_capacity": 2, "green_capacity": 0,
               "green_weight": 0}  # fmt: skip


def stack_with(outputs: dict[str, Any]) -> Stack:
    fake = SimpleNamespace(env="staging", target=SimpleNamespace(name="sandbox"), outputs=lambda: outputs)
    return cast(Stack, fake)


def test_the_database_output_gives_the_apps_settings() -> None:
    found = environment_database(stack_with({"database": DATABASE, "deployment": BLUE_SERVES}))
    assert found == EnvironmentDatabase.from_output("staging", DATABASE)
    assert found.app_settings() == {
        "DATABASE_SECRET_ARN": DATABASE["master_user_secret_arn"],
        "DATABASE_HOST": DATABASE["address"],
        "DATABASE_PORT": "5432",
        "DATABASE_NAME": "orders",
    }


@pytest.mark.parametrize(
    ("outputs", "says"),
    [
        ({}, "staging has not been applied on sandbox"),
        ({"database": None, "deployment": BLUE_SERVES}, "staging has no database on sandbox"),
    ],
)
def test_an_environment_without_a_database_is_refused_with_the_way_to_build_one(
    outputs: dict[str, Any], says: str
) -> None:
    with pytest.raises(MigrationError, match=says) as refused:
        environment_database(stack_with(outputs))
    assert refused.value.hint is not None
    assert "labkit stack apply staging --var enable_database=true" in refused.value.hint


def test_the_release_is_the_one_serving_all_the_traffic_unless_named() -> None:
    assert serving_release({"deployment": BLUE_SERVES}) == "1.2.0"
    assert serving_release({"deployment": {**BLUE_SERVES, "green_weight": 100}}) == "1.1.0"
    with pytest.raises(MigrationError, match="Traffic is split") as split:
        serving_release({"deployment": {**BLUE_SERVES, "green_weight": 10}})
    assert split.value.hint == "Name it: --release VERSION."


def test_the_cli_refuses_an_environment_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any release is fetched: the refusal is the environment's, with its hint."""
    monkeypatch.setattr("labkit.cli.db.target", lambda ctx: SimpleNamespace(name="sandbox"))
    monkeypatch.setattr(
        "labkit.infra.stack.Stack",
        lambda env, target, reporter: stack_with({"database": None, "deployment": BLUE_SERVES}),
    )
    fetched: list[str] = []
    monkeypatch.setattr("labkit.deploy.migrations._fetch_release", lambda *args: fetched.append("release"))
    result = CliRunner().invoke(app, ["db", "migrate", "staging"])
    assert isinstance(result.exception, MigrationError), result.output
    assert "staging has no database" in str(result.exception)
    assert fetched == []


@pytest.mark.parametrize("env", ["global", "nosuchenv"])
def test_only_an_app_environment_has_a_database(env: str) -> None:
    result = CliRunner().invoke(app, ["db", "current", env])
    assert result.exit_code == 2
    assert "has no database" in result.output
