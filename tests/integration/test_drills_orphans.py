"""The orphans drill on the drills' stack: a fresh stack has none (``labkit inventory orphans`` as a
process), the drill's four resources are each found with how, and adopt-or-remove-orphans, run with
papermill, removes them (a dry run first, a second run after) or adopts them into code written to a
copy of terraform/ (LABKIT_TERRAFORM_DIR), never into the checkout that other workers read.

Each test leaves staging as it found it: the removal deletes what the drill made; the adoption's
resources are destroyed by an apply once their code is deleted again (the code owned them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from labkit.infra.adopt import ADOPTED_FILE
from labkit.infra.inventory import find_orphans, held_ids
from labkit.infra.stack import Stack
from labkit.ops import orphans
from labkit.ops.drill import state_fingerprint
from labkit.ops.drills import orphans as drill
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.settings import TERRAFORM_DIR_ENV, terraform_dir
from labkit.target import Target
from tests.conftest import DrillsStack

# On the worker of test_drills_deploy.py and test_drills_plans.py (their drills stack): the
# drills group of test_drills_state.py, test_drills_cli.py, test_drills_drift.py and
# test_drills_compare.py is long enough.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]

KINDS = ("instance", "security-group", "elastic-ip", "targetgroup")
RUNBOOK = "adopt-or-remove-orphans"


@pytest.fixture()
def staging(drills_stack: DrillsStack) -> Iterator[Stack]:
    """The drills' staging; afterwards without orphans, should a test have failed halfway."""
    stack = drills_stack.stack()
    yield stack
    for orphan in find_orphans(stack.target, "staging").orphans:
        orphans.remove(stack, orphan)


def labkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=300, check=False
    )


def run(target: Target, tmp_path: Path, **parameters: Any) -> RunbookRun:
    return run_runbook(RUNBOOK, target, {"environment": "staging", **parameters}, out_root=tmp_path)


def test_a_fresh_stack_has_none_and_the_drills_orphans_are_found_then_removed(
    staging: Stack, tmp_path: Path
) -> None:
    target = staging.target
    fresh = labkit("inventory", "orphans", "staging")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.startswith("staging: no orphans (in vpc-")

    facts = drill.inject(target, "staging")
    listed = labkit("inventory", "orphans", "staging", "--json")
    assert listed.returncode == 2, listed.stdout + listed.stderr
    in_vpc, tagged = f"in VPC {facts['vpc']}", "tagged Environment=staging"
    assert {o["id"]: o["how"] for o in json.loads(listed.stdout)["orphans"]} == {
        facts["instance"]: [in_vpc, tagged],
        facts["security-group"]: [in_vpc],
        facts["elastic-ip"]: [tagged],
        facts["targetgroup"]: [in_vpc, tagged],
    }

    before = state_fingerprint(target, "staging")
    dry = run(target, tmp_path)  # decision "remove" is the default
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert state_fingerprint(target, "staging") == before
    assert {o.id for o in find_orphans(target, "staging").orphans} == {facts[kind] for kind in KINDS}

    fixed = run(target, tmp_path, dry_run=False, confirm="staging")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert not find_orphans(target, "staging").orphans
    assert_gone(target, facts)

    again = run(target, tmp_path, dry_run=False, confirm="staging")
    assert again.ok and again.record.outcome == "nothing-to-do", again.error


def assert_gone(target: Target, facts: dict[str, Any]) -> None:
    """Read from the APIs: the instance terminated, the others deleted."""
    ec2 = target.client("ec2")
    described = ec2.describe_instances(InstanceIds=[facts["instance"]])["Reservations"][0]["Instances"][0]
    assert described["State"]["Name"] == "terminated"
    elbv2 = target.client("elbv2")
    reads: list[Callable[[], object]] = [
        lambda: ec2.describe_security_groups(GroupIds=[facts["security-group"]]),
        lambda: ec2.describe_addresses(AllocationIds=[facts["elastic-ip"]]),
        lambda: elbv2.describe_target_groups(TargetGroupArns=[facts["targetgroup"]]),
    ]
    for call in reads:
        with pytest.raises(ClientError, match="NotFound"):
            call()


def test_adopted_orphans_are_owned_by_code_written_outside_the_checkout(
    staging: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout_file = terraform_dir() / "environments" / "staging" / ADOPTED_FILE
    copy = tmp_path / "terraform"
    shutil.copytree(terraform_dir(), copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    monkeypatch.setenv(TERRAFORM_DIR_ENV, str(copy))
    adopted_file = copy / "environments" / "staging" / ADOPTED_FILE
    stack = Stack("staging", staging.target)
    facts = drill.inject(stack.target, "staging")
    try:
        adopted = run(stack.target, tmp_path, dry_run=False, confirm="staging", decision="adopt")
        assert adopted.ok and adopted.record.outcome == "recovered", adopted.error
        code = adopted_file.read_text()
        assert all(f'id = "{facts[kind]}"' in code for kind in KINDS), code
        assert not checkout_file.exists()
        assert {facts[kind] for kind in KINDS} <= set(held_ids({"staging": stack.state()}))
        assert not find_orphans(stack.target, "staging").orphans
        plan = stack.plan()
        assert not plan.has_changes, plan.summary()
    finally:
        # The code owned them: without it, an apply destroys them and staging is as it was.
        adopted_file.unlink(missing_ok=True)
        removed = stack.apply().removed
    assert removed == len(KINDS)
    assert not find_orphans(stack.target, "staging").orphans
