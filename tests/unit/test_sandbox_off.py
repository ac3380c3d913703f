"""labkit.infra.sandbox_off: the one list of what the sandbox turns off, what Stack fills in from it,
and the table in terraform/README.md. The aws values applied: tests/integration/test_aws_path.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit.infra import sandbox_off
from labkit.infra.stack import Stack, StackNames
from labkit.settings import terraform_dir
from labkit.target import Target, aws, sandbox

SANDBOX = sandbox("http://127.0.0.1:1")  # never contacted
AWS = aws("us-east-1")
NAMES = StackNames(project="bglab", account_id="123456789012", region="us-east-1")
BEGIN = "<!-- sandbox-off: begin (labkit.infra.sandbox_off.markdown_table) -->\n"
END = "<!-- sandbox-off: end -->"


@pytest.fixture()
def offline(labkit_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stacks whose names, neighbours' ranges and deployment need no call to any target."""
    monkeypatch.setattr(StackNames, "for_target", classmethod(lambda cls, target: NAMES))
    monkeypatch.setattr(Stack, "other_vpc_cidrs", lambda self: {})
    monkeypatch.setattr(Stack, "outputs", lambda self: {})


def _filled(env: str, target: Target) -> dict[str, Any]:
    stack = Stack(env, target, reporter=None)
    return {**stack.variables(), **stack.backend_config()}


@pytest.mark.usefixtures("offline")
def test_stack_fills_in_the_sandbox_values_there_and_the_aws_values_on_aws() -> None:
    assert _filled("global", SANDBOX)["require_tls"] is False
    assert _filled("global", AWS)["require_tls"] is True
    for env in ("global", "staging", "production"):  # global: the GitHub roles' budget rights
        assert _filled(env, SANDBOX)["enable_budget"] is False
        assert _filled(env, AWS)["enable_budget"] is True
    checks = (
        "use_path_style",
        "skip_credentials_validation",
        "skip_requesting_account_id",
        "skip_metadata_api_check",
    )
    for env in ("global", "staging"):
        assert {name: _filled(env, SANDBOX)[name] for name in checks} == dict.fromkeys(checks, "true")
        assert not set(_filled(env, AWS)) & set(checks)
    # Each setting goes only to the roots it is listed for.
    assert "require_tls" not in _filled("staging", AWS)


@pytest.mark.usefixtures("labkit_home")
def test_every_listed_variable_is_one_its_roots_declare() -> None:
    roots = {
        "global": ("global",),
        "app": ("staging", "production"),
        "every": ("global", "staging", "production"),
    }
    for setting in sandbox_off.SANDBOX_OFF.values():
        if setting.kind != "variable":
            continue
        for env in roots[setting.scope]:
            assert setting.name in Stack(env, SANDBOX, reporter=None).declared_variables(), (
                env,
                setting.name,
            )


def test_the_terraform_readme_shows_the_list() -> None:
    readme = (terraform_dir() / "README.md").read_text()
    assert BEGIN in readme and END in readme, (
        f"terraform/README.md lost its markers {BEGIN.strip()} ... {END}"
    )
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert shown == sandbox_off.markdown_table(), (
        "terraform/README.md's table differs from labkit.infra.sandbox_off; paste in the output of "
        "`python -c 'from labkit.infra.sandbox_off import markdown_table; print(markdown_table(), end=\"\")'`"
    )
