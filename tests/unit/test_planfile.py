"""labkit.infra.planfile without a sandbox: names, commits, the plan's prior state, the checks."""

from __future__ import annotations

import json
import subprocess
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.errors import ConfigError, StalePlanError
from labkit.infra.planfile import (
    PLANS_DIR,
    UNKNOWN_COMMIT,
    Checkout,
    PlanRecord,
    default_plan_path,
    git_commit,
    git_dirty,
    prior_state,
    read_record,
    sidecar_path,
    what_changed,
)

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
RECORD = PlanRecord(
    environment="staging",
    target="sandbox",
    commit=COMMIT_A,
    sha256="1" * 64,
    state_serial=12,
    state_lineage="lineage-1",
    variables={"green_weight": 10},
    created_at="2026-12-02T14:00:00Z",
    summary="0 to add, 1 to change, 0 to destroy",
    has_changes=True,
)
SAME = Checkout(
    sha256="1" * 64,
    environment="staging",
    target="sandbox",
    commit=COMMIT_A,
    state_serial=12,
    state_lineage="lineage-1",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_default_names_carry_environment_and_short_commit_under_runs_plans() -> None:
    moment = datetime(2026, 12, 2, 14, 5, 9, 123456, tzinfo=UTC)
    path = default_plan_path("staging", COMMIT_A, moment)
    assert path.parent == PLANS_DIR and PLANS_DIR.parts[-2:] == ("runs", "plans")
    assert path.name == f"staging-{COMMIT_A[:7]}-20261202T140509123456Z.tfplan"
    assert sidecar_path(path).name == path.name + ".json"
    # Two plans a microsecond apart never share a file: no plan overwrites another.
    assert default_plan_path("staging", COMMIT_A, moment.replace(microsecond=123457)) != path


def test_the_commit_is_the_checkouts_head_or_unknown_outside_git(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == UNKNOWN_COMMIT
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "terraform").mkdir()
    (repo / "terraform" / "main.tf").write_text("# one\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    assert git_commit(repo) == git(repo, "rev-parse", "HEAD") and len(git_commit(repo)) == 40
    assert not git_dirty(repo)
    (repo / "terraform" / "main.tf").write_text("# two\n")
    assert git_dirty(repo)


def test_the_prior_state_is_read_from_the_plan_file_itself(tmp_path: Path) -> None:
    plan = tmp_path / "p.tfplan"
    with zipfile.ZipFile(plan, "w") as archive:
        archive.writestr("tfplan", b"")
        archive.writestr("tfstate", json.dumps({"version": 4, "serial": 7, "lineage": "abc"}))
    assert prior_state(plan) == (7, "abc")
    not_a_plan = tmp_path / "tfplan"
    not_a_plan.write_text("overwritten by a push")
    with pytest.raises(StalePlanError, match="is not a Terraform plan file"):
        prior_state(not_a_plan)


def test_nothing_changed_means_nothing_listed() -> None:
    assert what_changed(RECORD, SAME) == []


def test_each_change_since_the_plan_is_named() -> None:
    changed = what_changed(
        RECORD,
        replace(SAME, sha256="2" * 64, commit=COMMIT_B, state_serial=14),
    )
    assert len(changed) == 3
    assert "overwritten or altered" in changed[0]
    assert f"made from commit {COMMIT_A[:7]}" in changed[1] and f"now at {COMMIT_B[:7]}" in changed[1]
    assert "serial 12 -> 14" in changed[2]
    (lineage,) = what_changed(RECORD, replace(SAME, state_lineage="lineage-2", state_serial=1))
    assert "lineage lineage-1 -> lineage-2" in lineage
    (other,) = what_changed(RECORD, replace(SAME, environment="production"))
    assert "made for staging on sandbox, not production on sandbox" in other


def test_a_record_round_trips_through_its_sidecar(tmp_path: Path) -> None:
    plan = tmp_path / "staging.tfplan"
    plan.write_bytes(b"plan")
    with pytest.raises(StalePlanError, match="has no sidecar"):
        read_record(plan)
    sidecar_path(plan).write_text(RECORD.to_json())
    assert read_record(plan) == RECORD
    assert json.loads(sidecar_path(plan).read_text())["state_serial"] == 12


def test_cli_refuses_vars_on_top_of_a_saved_plan_before_touching_any_target(labkit_home: Path) -> None:
    result = CliRunner().invoke(
        app, ["stack", "apply", "staging", "--plan", "x.tfplan", "--var", "green_weight=10"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "saved plan fixes its variables" in str(result.exception)
