"""The out-of-sync drill on the drills' stack, in a copy of terraform/ (LABKIT_TERRAFORM_DIR, links
kept), never in the checkout that other workers read.

`labkit stack compare staging production`, run as a user runs it, finds only intended differences on
the drills' stack (production unbuilt: read from a plan of its code); after a new composition version
is applied to staging alone it names the version and the resource it brought as unintended;
promote-composition (papermill; a dry run first) releases what staging ran, moves production's pin
and plans production; the comparison then finds nothing unintended. Production is planned, not
built: the plan is what proves production now gets the release (its resources come from it), and
building production's NAT gateway and private subnets would cost minutes per run here.

Afterwards staging is applied from the checkout again, which removes what the new version added.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.infra import composition
from labkit.infra.stack import Stack
from labkit.ops.drills import out_of_sync as drill
from labkit.ops.drills.out_of_sync import next_minor
from labkit.ops.execute import run_runbook
from labkit.settings import PROJECT_ROOT, TERRAFORM_DIR_ENV, terraform_dir
from tests.conftest import DrillsStack

pytestmark = pytest.mark.integration

RUNBOOK = "promote-composition"


@pytest.fixture()
def copy(drills_stack: DrillsStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of terraform/ that labkit uses; afterwards staging is applied from the checkout again."""
    folder = tmp_path / "terraform"
    shutil.copytree(
        terraform_dir(), folder, symlinks=True, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    with monkeypatch.context() as patch:
        patch.setenv(TERRAFORM_DIR_ENV, str(folder))
        yield folder
    staging = drills_stack.stack()
    modules = terraform_dir() / "modules"
    checkout = {"version": composition.version_of(modules), "digest": composition.digest(modules)}
    if staging.outputs().get("composition") != checkout:
        staging.apply()
    assert not staging.plan(refresh=False).has_changes


def labkit_compare(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", "stack", "compare", "staging", "production", *options],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_composition_applied_to_staging_only_is_named_then_promoted(
    drills_stack: DrillsStack, copy: Path, tmp_path: Path
) -> None:
    target = drills_stack.target
    steady = labkit_compare()
    assert steady.returncode == 0, steady.stdout + steady.stderr
    assert "production has no state: its resources are those a plan of its code would create" in steady.stdout
    assert "follows from enable_private_subnets" in steady.stdout  # the NAT gateway, from the plan

    pinned = composition.pin("production").version  # the checkout's version, released
    facts = drill.inject(target, "staging")
    staging = Stack("staging", target, reporter=None)
    # Terraform's digest of what staging ran is labkit's of the files.
    ran = {"version": next_minor(pinned), "digest": composition.digest(copy / "modules")}
    assert staging.outputs()["composition"] == ran
    found = labkit_compare("--json")
    assert found.returncode == 2, found.stdout + found.stderr
    differences = json.loads(found.stdout)["differences"]
    unintended = {(d["kind"], d["name"]) for d in differences if not d["intended"]}
    assert unintended == {
        ("module", "composition (code)"),  # production's pin
        ("module", "composition (init)"),  # what Terraform resolved for each
        ("resource", facts["added"]),  # what the new version brought
    }

    parameters = {"environment": "production", "plan_only": True}
    dry = run_runbook(RUNBOOK, target, parameters, out_root=tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    assert composition.pin("production").version == pinned
    assert not (copy / "releases" / "bluegreen_environment" / f"v{ran['version']}").exists()

    confirmed = {**parameters, "dry_run": False, "confirm": "production"}
    promoted = run_runbook(RUNBOOK, target, confirmed, out_root=tmp_path)
    assert promoted.ok and promoted.record.outcome == "recovered", promoted.error
    pin = composition.pin("production")
    assert (pin.version, pin.digest) == (ran["version"], ran["digest"])
    checkout_releases = PROJECT_ROOT / "terraform" / "releases" / "bluegreen_environment"
    assert not (checkout_releases / f"v{ran['version']}").exists()

    ok, detail = drill.in_sync(target, "staging")
    assert ok, detail
