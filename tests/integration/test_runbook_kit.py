"""The runbook kit on a real sandbox: a toy runbook (tests/fixtures/runbooks/fix-marker.ipynb) run
with papermill, its audit records in the ledger table, and the kit's rules: dry run, confirm,
idempotence, a failing Verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.deploy.ledger import ensure_table
from labkit.errors import ConfirmationRequiredError
from labkit.infra.stack import StackNames
from labkit.ops import runbook
from labkit.ops.audit import AuditLog
from labkit.ops.execute import RunbookRun, catalog, run_runbook
from tests.conftest import RunningSandbox

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "runbooks"
BUCKET = "kit-runbook-test"


@pytest.fixture(scope="module")
def s3(sandbox: RunningSandbox) -> object:
    target = sandbox.target
    ensure_table(target, StackNames.for_target(target).ledger_table)
    client = target.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def marker(s3: object) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key="marker")["Body"].read().decode())  # type: ignore[attr-defined]


def break_marker(s3: object) -> None:
    s3.put_object(Bucket=BUCKET, Key="marker", Body=b"broken")  # type: ignore[attr-defined]


def run(sandbox: RunningSandbox, tmp_path: Path, **parameters: object) -> RunbookRun:
    return run_runbook(
        "fix-marker", sandbox.target, {"bucket": BUCKET, **parameters}, folder=FIXTURES, out_root=tmp_path
    )


def test_the_catalog_reads_name_fixes_and_parameters() -> None:
    (info,) = catalog(FIXTURES)
    assert info.name == "fix-marker"
    assert info.fixes == "the marker object does not say `fine`."
    assert info.parameters["dry_run"] == "True" and info.parameters["confirm"] == '""'


def test_a_dry_run_lists_the_fix_and_changes_nothing(
    sandbox: RunningSandbox, s3: object, tmp_path: Path
) -> None:
    break_marker(s3)
    result = run(sandbox, tmp_path)  # dry_run defaults to True in the runbook
    assert result.ok and result.record.outcome == "planned"
    assert marker(s3) == "broken"
    outcomes = [(s.section, s.outcome) for s in result.record.steps]
    assert ("act", "would") in outcomes and ("verify", "skipped") in outcomes
    assert result.record.detected_at is not None
    assert result.executed.exists() and result.record.executed_copy == str(result.executed)


def test_acting_without_confirm_is_refused_and_recorded(
    sandbox: RunningSandbox, s3: object, tmp_path: Path
) -> None:
    break_marker(s3)
    result = run(sandbox, tmp_path, dry_run=False)
    assert not result.ok and result.record.outcome == "refused"
    assert result.error is not None and "confirm" in result.error.message
    assert "ConfirmationRequiredError" in str(result.error)
    assert marker(s3) == "broken"
    assert not [s for s in result.record.steps if s.section == "act"]


def test_a_confirmed_run_recovers_then_a_second_finds_nothing_to_do(
    sandbox: RunningSandbox, s3: object, tmp_path: Path
) -> None:
    break_marker(s3)
    first = run(sandbox, tmp_path, dry_run=False, confirm="staging")
    assert first.ok and first.record.outcome == "recovered", first.record
    assert marker(s3) == "fine"
    act = [s for s in first.record.steps if s.section == "act"]
    assert [s.outcome for s in act] == ["ok"] and act[0].duration_s >= 0
    assert first.record.parameters == {
        "environment": "staging",
        "dry_run": False,
        "confirm": "staging",
        "bucket": BUCKET,
        "value": "fine",
    }
    assert first.record.who and first.record.target == "sandbox"

    second = run(sandbox, tmp_path, dry_run=False, confirm="staging")
    assert second.ok and second.record.outcome == "nothing-to-do"
    assert not [s for s in second.record.steps if s.section == "act"]
    assert second.record.detected_at is None


def test_a_failing_verify_fails_the_run(sandbox: RunningSandbox, s3: object, tmp_path: Path) -> None:
    break_marker(s3)
    result = run(sandbox, tmp_path, dry_run=False, confirm="staging", value="still wrong")
    assert not result.ok and result.record.outcome == "failed"
    assert result.error is not None and "RunbookFailedError" in str(result.error)
    assert [s.outcome for s in result.record.steps if s.section == "verify"] == ["failed"]


def test_production_needs_confirm_even_for_a_lock_only_action(sandbox: RunningSandbox, s3: object) -> None:
    lines: list[str] = []
    for environment, refused in (("staging", False), ("production", True)):
        rb = runbook.open_runbook(
            "fix-marker",
            target="sandbox",
            environment=environment,
            dry_run=False,
            confirm="",
            say=lines.append,
        )
        actions = [runbook.Action("Release a lock", lambda: None, lock_only=True)]
        if refused:
            with pytest.raises(ConfirmationRequiredError, match="confirm"):
                rb.plan(actions, nothing_to_do="-")
            assert rb.record.outcome == "refused"
        else:
            rb.plan(actions, nothing_to_do="-")
            rb.act()
            assert rb.finish().outcome == "recovered"


def test_the_audit_records_are_listed_newest_first_by_the_cli(sandbox: RunningSandbox, s3: object) -> None:
    records = AuditLog(sandbox.target, StackNames.for_target(sandbox.target).ledger_table).list("staging")
    assert records, "the earlier tests recorded runs"
    assert [r.run_id for r in records] == sorted((r.run_id for r in records), reverse=True)
    listed = subprocess.run(
        [sys.executable, "-m", "labkit", "ledger", "staging", "--runbooks", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [r.run_id for r in records][:20]
    shown = subprocess.run(
        [sys.executable, "-m", "labkit", "ledger", "--runbooks", "--show", records[0].run_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert records[0].runbook in shown.stdout and records[0].outcome in shown.stdout
