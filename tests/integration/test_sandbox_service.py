"""The sandbox service's life: started once by concurrent callers, status and URLs, a stack that
serves through the load balancer, its AWS state and traffic back after down and up, reset, and no
process left behind.

These tests run their own sandbox in a folder of their own (not the session's shared one), in
order: each builds on the state the one before left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import sandbox as sandbox_service
from labkit.errors import SandboxError
from labkit.target import Target
from tests.conftest import Boto3Stack, build_boto3_stack, target_states, upload_artifact, wait_for

pytestmark = pytest.mark.integration

LABKIT = str(Path(sys.executable).with_name("labkit"))
#: Credentials and settings of the user who starts the sandbox, which no instance may see.
USER_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAUSERCANARY",
    "AWS_SECRET_ACCESS_KEY": "user-secret-canary",
    "AWS_SESSION_TOKEN": "user-token-canary",
    "LABKIT_USER_CANARY": "from-the-users-shell",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's own sandbox folder; the sandbox is stopped at the end whatever happened."""
    root = tmp_path_factory.mktemp("own-sandbox")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_SANDBOX_HOME", str(root))
        for name, value in USER_ENV.items():  # what the shell that starts the sandbox holds
            patch.setenv(name, value)
        try:
            yield root
        finally:
            sandbox_service.down()


def processes(home: Path) -> dict[str, list[int]]:
    """Pids of this sandbox's processes, from /proc: the service, its load balancer worker, and
    its apps' gunicorns (master and workers)."""
    found: dict[str, list[int]] = {"service": [], "lb": [], "apps": []}
    pinned = f"LABKIT_SANDBOX_HOME={home}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes() if b"labkit.sandbox" in cmdline else b""
        except OSError:
            continue
        if b"gunicorn" in cmdline and str(home).encode() in cmdline:
            found["apps"].append(int(proc.name))
        elif pinned not in environ:
            continue
        elif b"labkit.sandbox.server.service" in cmdline:
            found["service"].append(int(proc.name))
        elif b"labkit.sandbox.server.lb" in cmdline:
            found["lb"].append(int(proc.name))
    return found


def app_count(home: Path) -> int:
    """How many apps run: each is a process group of its own (a gunicorn master and its workers)."""
    groups = set()
    for pid in processes(home)["apps"]:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    return len(groups)


def get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def test_two_processes_starting_it_at_once_get_one_sandbox(home: Path) -> None:
    code = "import labkit.sandbox as s; print(s.ensure_up())"
    starters = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    endpoints = {starter.communicate(timeout=180)[0].strip().splitlines()[-1] for starter in starters}
    assert all(starter.returncode == 0 for starter in starters)
    assert len(endpoints) == 1
    found = processes(home)
    assert (len(found["service"]), len(found["lb"])) == (1, 1)  # the load balancer runs in its own
    status = sandbox_service.status()
    assert status.running and status.endpoint in endpoints


def test_status_on_the_command_line(home: Path) -> None:
    shown = subprocess.run([LABKIT, "sandbox", "status"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"running at {sandbox_service.status().endpoint}" in shown.stdout
    running, line = sandbox_service.describe_status()
    assert running and line.startswith("running at http://127.0.0.1:")


@pytest.fixture(scope="module")
def stack(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Boto3Stack:
    target = sandbox_service.target()
    bucket = "svc-artifacts"
    target.client("s3").create_bucket(Bucket=bucket)
    out = tmp_path_factory.mktemp("releases")
    upload_artifact(target, bucket, "1.0.0", out)
    upload_artifact(target, bucket, "1.1.0", out)
    return build_boto3_stack(
        target,
        "svc",
        versions={"blue": "1.0.0", "green": "1.1.0"},
        capacity={"blue": 2, "green": 1},
        weights={"blue": 90, "green": 10},
    )


def all_healthy(target: Target, stack: Boto3Stack) -> bool:
    states = [s for arn in stack.target_groups.values() for s, _ in target_states(target, arn).values()]
    return len(states) == 3 and set(states) == {"healthy"}


def test_instances_serve_their_release_through_the_load_balancer(home: Path, stack: Boto3Stack) -> None:
    target = sandbox_service.target()
    wait_for("three healthy targets", lambda: all_healthy(target, stack), timeout_s=60)
    url = sandbox_service.alb_url(stack.dns_name)
    assert url.startswith("http://127.0.0.1:")
    printed = subprocess.run([LABKIT, "sandbox", "url", stack.dns_name], capture_output=True, text=True)
    assert printed.stdout.strip() == url

    seen: Counter[tuple[str, str]] = Counter()
    instances = set()
    for _ in range(200):
        status, body = get(url + "/")
        assert status == 200
        seen[body["color"], body["version"]] += 1
        instances.add(body["instance_id"])
    assert set(seen) == {("blue", "1.0.0"), ("green", "1.1.0")}
    assert seen["blue", "1.0.0"] > seen["green", "1.1.0"]  # 90/10
    registered = {i for arn in stack.target_groups.values() for i in target_states(target, arn)}
    assert instances == registered
    assert app_count(home) == 3


def test_an_app_has_an_instances_environment_and_nothing_of_the_users(home: Path, stack: Boto3Stack) -> None:
    apps = [i for i in sandbox_service.instances() if i["state"] == "running"]
    assert len(apps) == 3
    for app in apps:
        raw = Path(f"/proc/{app['pid']}/environ").read_bytes().decode()
        environ = dict(entry.split("=", 1) for entry in raw.split("\0") if entry)
        assert not set(environ) & set(USER_ENV), app
        assert not [name for name in environ if name.startswith("AWS_")], app
        assert {name for name in environ if not name.startswith("APP_")} == {
            "PATH", "HOME", "LANG", "PYTHONUNBUFFERED"
        }, app  # fmt: skip
        assert environ["HOME"] == app["folder"]


def test_down_stops_everything_and_up_brings_state_and_traffic_back(home: Path, stack: Boto3Stack) -> None:
    target = sandbox_service.target()
    s3, dynamodb = target.client("s3"), target.client("dynamodb")
    # What a Terraform S3 backend leaves: a versioned state object and a lock-table digest.
    s3.create_bucket(Bucket="svc-tfstate")
    s3.put_bucket_versioning(Bucket="svc-tfstate", VersioningConfiguration={"Status": "Enabled"})
    for serial in (1, 2):
        body = json.dumps({"serial": serial})
        s3.put_object(Bucket="svc-tfstate", Key="staging/terraform.tfstate", Body=body)
    dynamodb.create_table(
        TableName="svc-locks",
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    digest = {"LockID": {"S": "svc-tfstate/staging/terraform.tfstate-md5"}, "Digest": {"S": "x"}}
    dynamodb.put_item(TableName="svc-locks", Item=digest)
    url = sandbox_service.alb_url(stack.dns_name)

    def snapshot() -> dict[str, object]:
        elb = target.client("elbv2")
        versions = s3.list_object_versions(Bucket="svc-tfstate")["Versions"]
        return {
            "balancers": [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]],
            "groups": sorted(g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"]),
            "targets": {arn: sorted(target_states(target, arn)) for arn in stack.target_groups.values()},
            "actions": elb.describe_listeners(ListenerArns=[stack.listener_arn])["Listeners"][0][
                "DefaultActions"
            ],
            "state_versions": sorted(v["VersionId"] for v in versions),
            "state": s3.get_object(Bucket="svc-tfstate", Key="staging/terraform.tfstate")["Body"].read(),
            "lock_items": dynamodb.scan(TableName="svc-locks")["Items"],
        }

    before = snapshot()
    assert sandbox_service.down() is True
    assert processes(home) == {"service": [], "lb": [], "apps": []}
    assert not sandbox_service.status().running
    with pytest.raises(SandboxError, match="not running"):
        sandbox_service.alb_url(stack.dns_name)

    sandbox_service.up()
    assert snapshot() == before
    assert sandbox_service.alb_url(stack.dns_name) == url  # the listener keeps its port
    wait_for("the targets to turn healthy again", lambda: all_healthy(target, stack), timeout_s=60)
    assert get(url + "/")[0] == 200
    assert app_count(home) == 3


def test_reset_wipes_the_state_and_down_leaves_no_process(home: Path, stack: Boto3Stack) -> None:
    assert sandbox_service.reset() is True  # it was running, so it runs again, empty
    target = sandbox_service.target()
    assert target.client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert target.client("s3").list_buckets()["Buckets"] == []
    assert processes(home)["apps"] == []
    assert sandbox_service.down() is True
    assert processes(home) == {"service": [], "lb": [], "apps": []}
    assert sandbox_service.down() is False
