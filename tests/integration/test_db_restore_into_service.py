"""The db-destroyed drill on a staging that Terraform built with its database, run as a user runs it
from a terminal: `labkit drill run db-destroyed --env staging`.

The drill writes orders, takes a restore point, writes more and deletes the instance; the
db-restore runbook brings it back into service (issue 15's db-restore drill, and the gap session 13
found: the restored instance was never put back in service). Afterwards, as the drill's own checks
say: every write acknowledged before the restore point is in the instance under its own identifier,
an order is written and read back through the load balancer, and a plan of staging has no changes.
Then `labkit db current` reads the schema through the environment's outputs again, and a second
run of the runbook with the drill's restore point finds nothing to do.

Its own sandbox and homes; about 6 minutes, most of them the AWS provider's fixed waits (global's
bucket lifecycle, the ALB, and the RDS instance's create and its restore from the snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.labkit_cli import Labkit, private_sandbox

# A group of its own, handed out with the other long groups (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("db-restore")]

STAGING_WITH_DATABASE = (
    "stack", "apply", "staging",
    "--var", "blue_version=1.0.0", "--var", "green_version=1.0.0", "--var", "enable_database=true",
)  # fmt: skip
CONFIRMED = ("-p", "environment", "staging", "-p", "dry_run", "false", "-p", "confirm", "staging")


@pytest.fixture(scope="module")
def labkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Labkit]:
    with private_sandbox(tmp_path_factory.mktemp("db-restore")) as run:
        yield run


def test_a_deleted_database_is_restored_back_into_service(labkit: Labkit) -> None:
    for command in (
        ("stack", "apply", "global"),
        ("release", "build", "1.0.0"),
        STAGING_WITH_DATABASE,
        ("db", "migrate", "staging"),
    ):
        done = labkit(*command)
        assert done.returncode == 0, f"labkit {' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr}"

    drill = labkit("drill", "run", "db-destroyed", "--env", "staging")
    printed = drill.stdout
    assert drill.returncode == 0, f"{printed[-4000:]}\n{drill.stderr}"
    assert "drill db-destroyed on staging: VERIFIED" in printed
    # Before the injection and after the recovery: the steady state, both times.
    assert printed.count("ok: no-change-plan (no changes)") == 2, printed
    assert printed.count("ok: orders-through-alb (order ") == 2, printed
    assert "recovered: 3 action(s) done and verified" in printed  # restore, hold and connect, roll
    assert (
        "all 20 writes acknowledged before the restore point are in bglab-staging-db; "
        "5 of 5 written after it are not (the restore point's loss)"
    ) in printed

    current = labkit("db", "current", "staging")
    assert current.returncode == 0, current.stderr
    assert current.stdout.split()[-1] == "0001"

    # Run again with the drill's restore point, the runbook finds its work done and only verifies.
    (injected,) = [line for line in printed.splitlines() if line.startswith("  injected: ")]
    snapshot = json.loads(injected.removeprefix("  injected: "))["snapshot"]
    again = labkit("runbook", "run", "db-restore", *CONFIRMED, "-p", "snapshot", snapshot)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr}"
    assert "db-restore on staging: nothing-to-do (nothing to do; verified)" in again.stdout, again.stdout
