"""The state drills on the drills' stack: each injected for real, recovered by its runbook run with
papermill, and verified with checks the runbook did not write (the S3 object's bytes, lineage and
serial read here; a plan with no changes; the lock read from the backend).

One stack serves every drill test (``drills_stack``, built once per session); each test leaves it as
it found it, and the module's fixture puts back the one deployment variable the applies change.
test_drills_cli.py runs restore-state from the command line on the truncated variant, with its
refusal without confirm and a second run that finds nothing to do, and the concurrent-applies drill;
lesson 10 runs the garbage variant through the drill runner. This module runs restore-state on the
delete marker and checks the other variants' recovery through the runbook's functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.infra.stack import Stack
from labkit.ops import locks, state
from labkit.ops.drills import corrupt_state, stuck_lock
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.target import Target
from tests.conftest import DrillsStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def staging(drills_stack: DrillsStack) -> Iterator[Stack]:
    """The drills' staging; afterwards its state readable, unlocked, and its deployment as found."""
    stack = drills_stack.stack()
    found = stack.deployment()
    yield stack
    # Only when a test failed halfway: put the stack back for the tests after this module.
    if (finding := state.inspect(stack)).chosen is not None:
        state.restore(stack, finding)
    if (lock := locks.read_lock(stack)) is not None:
        stack.force_unlock(lock.id)
    if stack.deployment() != found:
        stack.apply(found)


def latest(target: Target, stack: Stack) -> tuple[str, bytes | None]:
    """The current version id of the state object and its bytes (None for a delete marker)."""
    config = stack.backend_config(locking=False)
    s3 = target.client("s3")
    listed = s3.list_object_versions(Bucket=config["bucket"], Prefix=config["key"])
    for marker in listed.get("DeleteMarkers", []):
        if marker["Key"] == config["key"] and marker["IsLatest"]:
            return str(marker["VersionId"]), None
    for version in listed.get("Versions", []):
        if version["Key"] == config["key"] and version["IsLatest"]:
            body = s3.get_object(Bucket=config["bucket"], Key=config["key"])["Body"].read()
            return str(version["VersionId"]), bytes(body)
    raise AssertionError("the state object has no current version")


def lineage_serial(body: bytes | None) -> tuple[str, int]:
    assert body is not None
    doc = json.loads(body)
    return str(doc["lineage"]), int(doc["serial"])


def run(name: str, target: Target, tmp_path: Path, **parameters: Any) -> RunbookRun:
    return run_runbook(name, target, {"environment": "staging", **parameters}, out_root=tmp_path)


def assert_no_change_plan(stack: Stack) -> None:
    plan = stack.plan()
    assert not plan.has_changes, plan.summary()


# -- corrupt-state -> restore-state --------------------------------------------------------------


def test_a_deleted_state_is_restored_by_the_runbook(staging: Stack, tmp_path: Path) -> None:
    target = staging.target
    _, good = latest(target, staging)
    facts = corrupt_state.inject(target, "staging", variant="deleted")
    marker, gone = latest(target, staging)
    assert gone is None and marker == facts["delete_marker"]

    dry = run("restore-state", target, tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert latest(target, staging) == (marker, None)  # the dry run changed nothing

    fixed = run("restore-state", target, tmp_path, dry_run=False, confirm="staging")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert_restored(staging, facts, good, marker)
    assert latest(target, staging)[0] == facts["version_id"]  # the marker removed, not a copy made
    assert_no_change_plan(staging)


@pytest.mark.parametrize("variant", ["garbage", "truncated", "other-lineage"])
def test_the_other_corruptions_are_diagnosed_and_restored(staging: Stack, variant: str) -> None:
    """The same recovery through the functions the runbook's cells call (no kernel, no plan)."""
    target = staging.target
    _, good = latest(target, staging)
    facts = corrupt_state.inject(target, "staging", variant=variant)
    broken_version, _ = latest(target, staging)
    finding = state.inspect(staging)
    assert finding.problem == variant and finding.lineage == facts["lineage"]
    assert finding.chosen is not None and finding.chosen.version_id == facts["version_id"]
    for action in state.actions(staging, finding):
        action.run()
    assert_restored(staging, facts, good, broken_version)
    assert state.inspect(staging).ok


def assert_restored(stack: Stack, facts: dict[str, Any], good: bytes | None, broken_version: str) -> None:
    """The current object is byte for byte the last good state (no state version lost)."""
    version, body = latest(stack.target, stack)
    assert version != broken_version
    assert body == good
    assert lineage_serial(body) == (facts["lineage"], facts["serial"])
    assert corrupt_state.state_is_last_good(stack.target, "staging")[0]


# -- stuck-lock -> unlock-state ------------------------------------------------------------------


def test_unlock_state_refuses_while_the_holder_runs(staging: Stack, tmp_path: Path) -> None:
    with staging.hold_lock():
        held = locks.read_lock(staging)
        refused = run("unlock-state", staging.target, tmp_path, dry_run=False, confirm="staging")
        assert not refused.ok and refused.record.outcome == "failed"
        assert refused.error is not None and "LockHolderAliveError" in str(refused.error)
        assert "Terraform runs for staging" in str(refused.error)
        still = locks.read_lock(staging)
        assert still is not None and held is not None and still.id == held.id
    assert locks.read_lock(staging) is None


def test_a_killed_apply_leaves_its_lock_and_unlock_state_clears_it(staging: Stack, tmp_path: Path) -> None:
    target = staging.target
    before = latest(target, staging)
    facts = stuck_lock.inject(target, "staging")
    lock = locks.read_lock(staging)
    assert lock is not None and lock.id == facts["lock_id"] and lock.operation == "OperationTypeApply"
    assert not stuck_lock.state_unlocked(target, "staging")[0]

    dry = run("unlock-state", target, tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    after_dry = locks.read_lock(staging)
    assert after_dry is not None and after_dry.id == lock.id
    assert latest(target, staging) == before

    fixed = run("unlock-state", target, tmp_path, dry_run=False, confirm="staging")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert stuck_lock.state_unlocked(target, "staging") == (True, "no state lock")
    assert latest(target, staging) == before  # the killed apply wrote no state

    again = run("unlock-state", target, tmp_path, dry_run=False, confirm="staging")
    assert again.ok and again.record.outcome == "nothing-to-do", again.error
