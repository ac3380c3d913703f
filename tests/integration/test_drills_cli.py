"""The drills and runbooks as a new user meets them: the commands runbooks/README.md writes, run
as processes against the drills' stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labkit.ops.drill import state_identity
from tests.conftest import DrillsStack
from tests.workflow_commands import RUNBOOK_RUN

pytestmark = pytest.mark.integration


def labkit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_drill_list_names_every_drill_and_its_runbook() -> None:
    listed = {d["name"]: d["runbook"] for d in json.loads(labkit("drill", "list", "--json").stdout)}
    assert listed == {
        "accidental-destroy": "restore-environment",
        "cidr-conflict": None,
        "concurrent-applies": None,
        "corrupt-state": "restore-state",
        "credential-leak": "credential-leak",
        "db-destroyed": "db-restore",
        "deploy-permission-lost": "diagnose-access-denied",
        "deploy-role-deleted": "fix-oidc-trust",
        "drift": "reconcile-drift",
        "lost-deploy": "deploy-recover",
        "name-conflict": "resolve-name-conflict",
        "oidc-misconfigured": "fix-oidc-trust",
        "orphans": "adopt-or-remove-orphans",
        "out-of-sync": "promote-composition",
        "quota": "quota-check",
        "stale-plan": None,
        "stuck-lock": "unlock-state",
    }


def test_drill_export_is_a_chaos_toolkit_experiment() -> None:
    spec = json.loads(labkit("drill", "export", "corrupt-state").stdout)
    assert {"title", "steady-state-hypothesis", "method", "rollbacks"} <= set(spec)
    assert spec["method"][0]["provider"]["func"] == "chaos_inject"


def test_runbook_list_shows_what_each_fixes() -> None:
    listed = {r["name"]: r for r in json.loads(labkit("runbook", "list", "--json").stdout)}
    assert {"restore-state", "unlock-state", "restore-environment", "deploy-recover"} <= set(listed)
    assert listed["adopt-or-remove-orphans"]["parameters"]["decision"] == '"remove"'  # as written
    for runbook in listed.values():
        assert runbook["fixes"], runbook
        assert {"target", "environment", "dry_run", "confirm"} <= set(runbook["parameters"])


def test_inject_then_recover_by_hand_refused_confirmed_then_nothing_to_do(drills_stack: DrillsStack) -> None:
    good = state_identity(drills_stack.target, "staging")
    assert good is not None

    injected = labkit("drill", "inject", "corrupt-state", "staging", "-p", "variant", "truncated")
    assert injected.returncode == 0, injected.stderr
    assert "labkit runbook run restore-state" in injected.stdout
    assert state_identity(drills_stack.target, "staging") is None  # it no longer parses

    base = ("runbook", "run", "restore-state", "-p", "environment", "staging")
    dry = labkit(*base)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "planned" in dry.stdout and state_identity(drills_stack.target, "staging") is None

    refused = labkit(*base, "-p", "dry_run", "false")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refused" in refused.stdout and "confirm" in refused.stderr

    acting = {"dry_run": "false", "confirm": "staging"}
    # As runbook.yml runs it.
    done = labkit(*RUNBOOK_RUN.args(runbook="restore-state", env="staging", **acting))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recovered" in done.stdout
    assert state_identity(drills_stack.target, "staging") == good

    again = labkit(*base, "-p", "dry_run", "false", "-p", "confirm", "staging")
    assert again.returncode == 0 and "nothing-to-do" in again.stdout, again.stdout

    runs = json.loads(labkit("ledger", "staging", "--runbooks", "--json").stdout)
    assert [r["outcome"] for r in runs[:4]] == ["nothing-to-do", "recovered", "refused", "planned"]


def test_drill_run_prints_the_figures_and_exits_0(drills_stack: DrillsStack) -> None:
    """concurrent-applies, the drill without a runbook (run_drill's full path with a runbook is
    lesson 10's): two real applies, one refused on the lock, the steady state before and after."""
    before = state_identity(drills_stack.target, "staging")
    assert before is not None
    ran = labkit("drill", "run", "concurrent-applies", "--env", "staging")
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "drill concurrent-applies on staging: VERIFIED" in ran.stdout
    assert "state versions lost 0" in ran.stdout
    assert "requests failed     0 of" in ran.stdout, ran.stdout[-3000:]
    assert state_identity(drills_stack.target, "staging") == (before[0], before[1] + 1)
