"""Two developers' environments side by side on the drills' sandbox: each created with one
`labkit env create` in its own process, both at once; they share global, have distinct names and VPC
ranges clear of staging's, both serve and plan clean; each goes with one `labkit env destroy` and
leaves nothing (no tagged resource, state object or claim). Their roots are generated under the
session's LABKIT_HOME: the checkout's terraform/ is only read."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from labkit.infra.envnames import CLAIMS_PREFIX, dev_environment, overlaps
from labkit.infra.inventory import leftovers
from labkit.infra.stack import PROJECT, Stack, state_key
from labkit.settings import terraform_dir
from tests.conftest import DrillsStack, wait_for

# On the worker of test_drills_deploy.py and test_drills_plans.py (their drills stack): the
# drills group of test_drills_state.py, test_drills_cli.py, test_drills_drift.py and
# test_drills_compare.py is long enough.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("drills-deploy")]

#: What two developers type: one a handle, one a branch (hashed: it has a slash and capitals).
NAMES = ("alice", "feature/Login")


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{out}\n{err[-3000:]}"
    return out


def test_two_developer_environments_side_by_side(drills_stack: DrillsStack) -> None:
    target = drills_stack.target
    envs = [dev_environment(name, PROJECT) for name in NAMES]
    source_before = sorted(p.name for p in (terraform_dir() / "environments").iterdir())
    started = time.monotonic()
    creates: list[subprocess.Popen[str]] = []
    try:
        creates = [start("env", "create", name, "--version", "1.0.0", "--capacity", "1") for name in NAMES]
        printed = [finish(proc) for proc in creates]
        created_s = time.monotonic() - started
        check_side_by_side(drills_stack, envs, printed)
    except BaseException:
        for proc in creates:  # the other create, when one failed: let it end before the destroys
            proc.communicate(timeout=600)
        for name in NAMES:  # leave the session's sandbox clean for the tests after this one
            start("env", "destroy", name).communicate(timeout=600)
        raise

    started = time.monotonic()
    for proc in [start("env", "destroy", name) for name in NAMES]:
        finish(proc)
    destroyed_s = time.monotonic() - started
    s3 = target.client("s3")
    bucket = Stack("global", target).names.state_bucket
    for env in envs:
        assert leftovers(target, project=PROJECT, environment=env).empty
        versions = s3.list_object_versions(Bucket=bucket, Prefix=f"{env}/")
        assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=CLAIMS_PREFIX).get("Contents")
    assert json.loads(finish(start("env", "list", "--json"))) == []
    assert sorted(p.name for p in (terraform_dir() / "environments").iterdir()) == source_before
    print(f"created both in {created_s:.0f} s, destroyed both in {destroyed_s:.0f} s")


def check_side_by_side(drills_stack: DrillsStack, envs: list[str], printed: list[str]) -> None:
    target = drills_stack.target
    for env, out in zip(envs, printed, strict=True):
        assert f"environment {env}" in out and f"bglab-{env}-green" in out  # what was derived, said
    listed = {row["environment"]: row for row in json.loads(finish(start("env", "list", "--json")))}
    assert set(listed) == set(envs)
    stacks = [Stack(env, target, reporter=None) for env in envs]
    outputs = [stack.outputs() for stack in stacks]
    cidrs = [str(o["vpc_cidr"]) for o in outputs]
    assert cidrs == [listed[env]["vpc_cidr"] for env in envs]
    assert not overlaps(cidrs[0], cidrs[1])
    assert not any(overlaps(c, str(drills_stack.outputs["vpc_cidr"])) for c in cidrs)
    # Shared global: one state bucket (each its own key), the same artifact bucket.
    assert {o["artifact_bucket"] for o in outputs} == {drills_stack.outputs["artifact_bucket"]}
    assert [s.backend_config()["key"] for s in stacks] == [state_key(env) for env in envs]
    assert len({s.backend_config()["bucket"] for s in stacks}) == 1
    names = [{o["alb_arn"], o["blue_target_group_arn"], o["green_target_group_arn"], o["blue_asg_name"]}
             for o in outputs]  # fmt: skip
    assert not names[0] & names[1]
    for out in outputs:
        url = target.alb_url(str(out["alb_dns_name"]))
        body = wait_for(f"{url} to serve", lambda url=url: _get(url), timeout_s=90)
        assert body["version"] == "1.0.0"
    for stack in stacks:
        plan = stack.plan()
        assert not plan.has_changes, plan.summary()


def _get(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.loads(response.read())) if response.status == 200 else None
    except OSError:
        return None
