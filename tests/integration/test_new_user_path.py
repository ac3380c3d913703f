"""The path a new user takes, as real `labkit` processes on a private sandbox: publish a release,
apply global and staging, and every request through the ALB answers 200 once `stack apply` returns.

Then that user deploys a release and restarts the sandbox: the state bucket's every version, the
releases and the deploy ledger come back exactly as they were saved, with no lock resurrected.

The module starts its own sandbox (`labkit sandbox up` with a private LABKIT_SANDBOX_HOME and
LABKIT_HOME), so nothing it applies meets the session's staging stack. One staging build (about 3 min).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.labkit_cli import Labkit, private_sandbox
from tests.workflow_commands import RELEASE_BUILD, RUNBOOK_DEPLOY

pytestmark = pytest.mark.integration

#: Requests sent through the ALB right after `stack apply` returns; every one must answer 200.
REQUESTS = 50
FIRST = ["--var", "blue_version=1.0.0", "--var", "green_version=1.0.0"]
FIRST += ["--var", "blue_capacity=2", "--var", "green_capacity=0", "--var", "green_weight=0"]


@pytest.fixture(scope="module")
def labkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Labkit]:
    with private_sandbox(tmp_path_factory.mktemp("new-user")) as run:
        yield run


def test_build_apply_and_every_request_answers_200(labkit: Labkit) -> None:
    # Before global exists there is nowhere to publish: the command says what to do first.
    early = labkit("release", "build", "1.0.0")
    assert early.returncode == 1
    assert "`labkit stack apply global`" in early.stderr

    applied = labkit("stack", "apply", "global")
    assert applied.returncode == 0, applied.stderr

    # A first apply of staging that names no releases is refused before Terraform runs, with the
    # flags that name them (Terraform's own error would name its -var, not labkit's --var).
    bare = labkit("stack", "apply", "staging")
    assert bare.returncode == 2  # bad input
    assert "blue_version and green_version not given" in bare.stderr
    assert "`labkit stack apply staging --var blue_version=1.0.0 --var green_version=1.0.0`" in bare.stderr

    # staging refuses 1.0.0 before Terraform runs, naming the command that publishes it.
    refused = labkit("stack", "apply", "staging", *FIRST)
    assert refused.returncode == 1
    assert "release 1.0.0 is not in the artifact bucket" in refused.stderr
    assert "`labkit release build 1.0.0`" in refused.stderr
    assert "Apply complete" not in refused.stdout and "Creating" not in refused.stdout
    nothing = labkit("stack", "output", "staging", "--json")
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == {}, "staging was applied anyway"

    built = labkit(*RELEASE_BUILD.args(version="1.0.0"))  # as deploy.yml builds its release
    assert built.returncode == 0, built.stderr
    assert "uploaded s3://" in built.stdout and "releases/1.0.0/release.tar.gz" in built.stdout
    listed = json.loads(labkit("release", "list", "--json").stdout)
    assert listed["versions"] == ["1.0.0"]

    staging = labkit("stack", "apply", "staging", *FIRST)
    assert staging.returncode == 0, staging.stdout[-3000:] + staging.stderr
    assert "blue: 2/2 healthy" in staging.stdout

    outputs = json.loads(labkit("stack", "output", "staging", "--json").stdout)
    url = labkit("sandbox", "url", outputs["alb_dns_name"]).stdout.strip()
    statuses = [_get(url) for _ in range(REQUESTS)]
    assert statuses == [200] * REQUESTS, f"through {url}: {statuses}"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_deploy_then_a_sandbox_restart_brings_everything_back(
    labkit: Labkit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: a restart once rewound the sandbox and resurrected a state lock."""
    from labkit import Stack, sandbox
    from labkit.deploy.ledger import Ledger
    from labkit.infra.inventory import leftovers
    from labkit.infra.stack import PROJECT
    from labkit.sandbox import target as sandbox_target

    for name in ("LABKIT_HOME", "LABKIT_SANDBOX_HOME"):
        monkeypatch.setenv(name, labkit.env[name])
    built = labkit(*RELEASE_BUILD.args(version="1.1.0"))
    assert built.returncode == 0, built.stderr
    # The deploy workflow's command (the deploy runbook), with a one-step canary that bakes a second.
    deployed = labkit(
        *RUNBOOK_DEPLOY.args(env="staging", version="1.1.0"), "-p", "weights", "100", "-p", "bake_s", "1"
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr
    assert "recovered" in deployed.stdout  # the runbook acted, and its checks held
    target = sandbox_target()
    assert not leftovers(target, project=PROJECT, environment="staging").empty  # a paged read, as 09's
    saved = wait_for("the deploy saved", lambda: sandbox.status().saves.get("unsaved_changes") is False)
    assert saved and not sandbox.status().saves_failing, sandbox.status().save_lines()

    world = Stack("global", target).outputs()
    names = (str(world["state_bucket"]), str(world["artifact_bucket"]), str(world["ledger_table"]))
    before = _saved_world(target, *names)
    assert labkit("sandbox", "down", timeout_s=120).returncode == 0
    started = labkit("sandbox", "up", timeout_s=120)
    assert started.returncode == 0, started.stderr
    assert "restored state holds" not in started.stdout, started.stdout
    target = sandbox_target()

    assert _saved_world(target, *names) == before
    assert sandbox.status().restored_locks == []
    assert not [key for key in before["state_bodies"] if key.endswith(".tflock")]
    assert Ledger(target, names[2]).lock_holder("staging") is None
    assert not Stack("staging", target).plan().has_changes


def _saved_world(target: Any, state_bucket: str, artifact_bucket: str, ledger_table: str) -> dict[str, Any]:
    """Everything a restart must keep: every version of every object in the state bucket (Terraform
    state and lock files) with the newest bodies, the releases, and every ledger item."""
    s3 = target.client("s3")
    versions = s3.list_object_versions(Bucket=state_bucket)
    objects = sorted(
        (v["Key"], v["VersionId"], v.get("ETag"), v.get("Size"), v["IsLatest"])
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
    )
    latest = {
        key: s3.get_object(Bucket=state_bucket, Key=key)["Body"].read()
        for key, _, etag, _, is_latest in objects
        if is_latest and etag is not None
    }
    releases = sorted(
        (o["Key"], o["ETag"], o["Size"])
        for o in s3.list_objects_v2(Bucket=artifact_bucket).get("Contents", [])
    )
    items = target.client("dynamodb").scan(TableName=ledger_table)["Items"]
    ledger = sorted(json.dumps(item, sort_keys=True) for item in items)
    return {"state_objects": objects, "state_bodies": latest, "releases": releases, "ledger": ledger}
