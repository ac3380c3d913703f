"""labkit.infra.stack and `labkit stack` without a sandbox: names, locking mode, input checks, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.cli.stack import parse_vars
from labkit.errors import ConfigError, SpendNotAllowedError, StackError
from labkit.infra.stack import Stack, StackNames, state_key, uses_lockfile
from labkit.target import Target, aws, sandbox

SANDBOX = "http://127.0.0.1:1"  # never contacted: every check here happens before any AWS call


def test_bucket_names_carry_account_and_region_as_s3_names_are_global() -> None:
    names = StackNames(project="bglab", account_id="123456789012", region="eu-west-1")
    assert names.state_bucket == "bglab-tfstate-123456789012-eu-west-1"
    assert names.artifact_bucket == "bglab-artifacts-123456789012-eu-west-1"
    assert names.lock_table == "bglab-tflock"
    assert names.ledger_table == "bglab-deployments"
    assert state_key("staging") == "staging/terraform.tfstate"


@pytest.mark.parametrize(
    ("version", "lockfile"), [("1.6.0", False), ("1.9.8", False), ("1.10.0", True), ("1.11.4", True)]
)
def test_s3_native_locking_from_terraform_1_10(version: str, lockfile: bool) -> None:
    assert uses_lockfile(version) is lockfile


def test_vars_stay_strings_unless_json_lists_maps_or_null() -> None:
    assert parse_vars(["green_weight=10", "blue_version=1.10", "preview_color=null"]) == {
        "green_weight": "10",
        "blue_version": "1.10",  # not the number 1.1
        "preview_color": None,
    }
    assert parse_vars(['alarm_emails=["a@example.com"]', 'tags={"Owner": "me"}', "x=a=b"]) == {
        "alarm_emails": ["a@example.com"],
        "tags": {"Owner": "me"},
        "x": "a=b",
    }


@pytest.mark.parametrize("pair", ["green_weight", "=10", "tags={not json"])
def test_malformed_var_is_refused_with_the_fix(pair: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_vars([pair])
    assert "--var" in str(raised.value) and raised.value.hint


def test_unknown_environment_is_refused(labkit_home: Path) -> None:
    with pytest.raises(StackError, match="Unknown environment 'qa'") as raised:
        Stack("qa", sandbox(SANDBOX))
    assert "global, staging, production" in str(raised.value.hint)


def test_global_refuses_destroy_and_points_at_the_teardown(labkit_home: Path) -> None:
    with pytest.raises(StackError, match="Refusing to destroy global") as raised:
        Stack("global", sandbox(SANDBOX)).destroy()
    assert "teardown(confirm='global')" in str(raised.value.hint)


def test_teardown_needs_the_confirmation_and_is_for_global_only(labkit_home: Path) -> None:
    with pytest.raises(StackError, match="without confirm='global'"):
        Stack("global", sandbox(SANDBOX)).teardown(confirm="yes")
    with pytest.raises(StackError, match="teardown is for global only"):
        Stack("staging", sandbox(SANDBOX)).teardown(confirm="global")


def test_apply_on_aws_without_allow_spend_is_refused_before_anything_runs(labkit_home: Path) -> None:
    stack = Stack("staging", aws("us-east-1"))
    with pytest.raises(SpendNotAllowedError):
        stack.apply({"green_weight": 10})
    assert not (labkit_home / "terraform").exists(), "nothing was initialised"


def test_cli_refuses_a_malformed_var_before_touching_any_target(labkit_home: Path) -> None:
    result = CliRunner().invoke(app, ["stack", "plan", "staging", "--var", "green_weight"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)


def test_destroying_on_aws_needs_the_environments_name_before_any_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checked before AWS is called: a call would fail on the closed endpoint instead."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    aws = Target(name="aws", region="us-east-1")
    with pytest.raises(StackError, match="without confirm='staging'"):
        Stack("staging", aws).destroy()
    with pytest.raises(StackError, match="without confirm='production'"):
        Stack("production", aws).destroy(confirm="staging")
    with pytest.raises(StackError, match="without the account id"):
        Stack("global", aws).teardown(confirm="global")
    with pytest.raises(StackError, match="without confirm='global'"):
        Stack("global", aws).teardown(confirm="staging")


def test_the_sandbox_needs_no_destroy_confirmation_but_for_production() -> None:
    sandbox = Target(name="sandbox", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    Stack("staging", sandbox).confirm_destroy(None)
    Stack("global", sandbox).confirm_destroy(None)
    Stack("production", sandbox).confirm_destroy("production")
    # Refused before any call: the endpoint is closed, a call would fail another way.
    with pytest.raises(StackError, match="Refusing to destroy production without confirm='production'"):
        Stack("production", sandbox).destroy()
    with pytest.raises(StackError, match="stack destroy production --confirm production"):
        Stack("production", sandbox).destroy(confirm="staging")


def test_a_variable_the_root_does_not_declare_is_refused_not_ignored(labkit_home: Path) -> None:
    """Terraform only warns about an undeclared variable in a var file and applies without it."""
    staging = Stack("staging", sandbox(SANDBOX))
    declared = staging.declared_variables()
    assert {"deregistration_delay", "health_check", "vpc_cidr", "green_weight"} <= declared
    with pytest.raises(ConfigError, match="staging declares no variable 'deregistraton_delay'") as raised:
        staging.variables({"deregistraton_delay": 7}, carry_over=False)
    assert "deregistration_delay" in str(raised.value.hint)
    assert "lock_table_name" in Stack("global", sandbox(SANDBOX)).declared_variables()


def test_global_keeps_its_github_settings_as_an_app_environment_keeps_its_deployment(
    labkit_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain `labkit stack apply global` must not remove the OIDC provider and the deploy role:
    global's next apply takes the GitHub variables it was last applied with (its github_settings
    output), and an override still wins."""
    applied = {
        "github_repository": "acme/bluegreen-lab",
        "github_subject": {"environment": "staging", "branch": None},
        "github_oidc_issuer_url": "https://localhost/labkit-sandbox/oidc",
        "github_oidc_thumbprints": ["ab" * 20],
        "create_oidc_provider": True,
    }
    global_stack = Stack("global", sandbox(SANDBOX))
    names = StackNames("bglab", "123456789012", "us-east-1")  # no STS call for the account id
    monkeypatch.setattr(Stack, "names", property(lambda self: names))
    monkeypatch.setattr(Stack, "outputs", lambda self: {"github_settings": applied, "deployment": {"x": 1}})
    values = global_stack.variables()
    assert {name: values[name] for name in applied} == applied and "x" not in values
    assert global_stack.variables({"github_repository": "acme/other"})["github_repository"] == "acme/other"
    assert "github_repository" not in global_stack.variables(carry_over=False)
    # Every carried name is a variable global declares (the output and the variables agree).
    assert set(applied) <= global_stack.declared_variables()
    monkeypatch.setattr(Stack, "outputs", lambda self: {"github_settings": None})
    assert "github_repository" not in global_stack.variables()  # never set: no OIDC resources


def test_a_deploy_keeps_the_database_an_apply_was_given(
    labkit_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`labkit stack apply staging --var enable_database=true`, then a deploy's apply of the
    deployment variables alone: it must keep the database (bench/db_deploy.py saw the deploy's
    apply plan to delete it), so the root's carried_variables output is carried over too; never
    given, it carries nothing and the environment's own setting holds."""
    staging = Stack("staging", sandbox(SANDBOX))
    names = StackNames("bglab", "123456789012", "us-east-1")
    monkeypatch.setattr(Stack, "names", property(lambda self: names))
    monkeypatch.setattr(Stack, "other_vpc_cidrs", lambda self: {})
    applied = {"blue_version": "1.0.0", "green_weight": 0}
    outputs = {"deployment": applied, "carried_variables": {"enable_database": True}}
    monkeypatch.setattr(Stack, "outputs", lambda self: outputs)
    values = staging.variables({"green_weight": 10})
    assert (values["enable_database"], values["blue_version"], values["green_weight"]) == (True, "1.0.0", 10)
    assert staging.variables({"enable_database": False})["enable_database"] is False
    assert "enable_database" in staging.declared_variables()
    outputs["carried_variables"] = None
    assert "enable_database" not in staging.variables()
