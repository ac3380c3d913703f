"""The sandbox never loses its state silently (issues 11 and 19), on a real service of its own:

- locks held in the saved state are reported after a restart, with holder and age;
- the API answers loopback Host names only, without CORS headers;
- a corrupt, truncated or foreign state file makes `labkit sandbox up` refuse, overwriting nothing;
  `--reset` keeps the file aside and `--restore` brings a kept one back;
- a save made to fail (an unpicklable object planted in a backend) shows in `labkit sandbox
  status`, makes the next command warn, and makes `labkit sandbox down` exit non-zero with the
  reason, keeping the service's last state under a new name.

The tests run in order, each on the state the one before left.
"""

from __future__ import annotations

import http.client
import json
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from labkit import sandbox as sandbox_service
from labkit.deploy.ledger import Ledger, ensure_table
from labkit.sandbox import target as sandbox_target
from labkit.sandbox.client import statefile
from labkit.settings import PROJECT_ROOT
from tests.conftest import RunningSandbox, wait_for

pytestmark = pytest.mark.integration

LABKIT = str(Path(sys.executable).with_name("labkit"))
TF_LOCK = {"ID": "0b5e-77", "Operation": "OperationTypeApply", "Who": "ann@laptop",
           "Created": "2026-12-02T06:20:43.123456789Z"}  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("durable-sandbox")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_SANDBOX_HOME", str(root))
        try:
            yield root
        finally:
            sandbox_service.down()


def labkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LABKIT, *args], capture_output=True, text=True, timeout=180)


def test_locks_in_the_saved_state_are_reported_after_a_restart(home: Path) -> None:
    target = sandbox_target()
    s3 = target.client("s3")
    s3.create_bucket(Bucket="durable-state")
    s3.put_object(Bucket="durable-state", Key="staging/terraform.tfstate.tflock", Body=json.dumps(TF_LOCK))
    table = ensure_table(target, "durable-ledger")
    Ledger(target, table).acquire_lock("staging", "bob@laptop pid 4242", "20261202T062000000000Z-abc123")

    assert labkit("sandbox", "down").returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("aws-state.pickle", "service.log", "save-status.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    started = labkit("sandbox", "up")
    assert started.returncode == 0, started.stderr

    output = started.stdout
    lock = "s3://durable-state/staging/terraform.tfstate.tflock"
    assert f"Terraform state lock {lock} held by ann@laptop" in output
    assert "since 2026-12-02T06:20:43" in output and "ID 0b5e-77" in output
    assert "deployment lock ledger durable-ledger, environment staging held by bob@laptop pid 4242" in output
    shown = labkit("sandbox", "status")
    assert shown.stdout.count("restored lock: ") == 2, shown.stdout
    assert "last good save: 20" in shown.stdout


SIGNED = "SignedHeaders=host, Signature=0"


def request(host: str, method: str = "GET", **headers: str) -> http.client.HTTPResponse:
    endpoint = sandbox_service.status().endpoint or ""
    conn = http.client.HTTPConnection(*endpoint.removeprefix("http://").split(":"), timeout=10)
    # As the sandbox's admin (its signatures are not checked): an anonymous S3 call is refused 403,
    # like a refused Host, with IAM enforced.
    signed = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, {SIGNED}"
    }
    conn.request(method, "/durable-state?list-type=2", headers={"Host": host, **signed, **headers})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_api_answers_loopback_hosts_only_and_without_cors(home: Path) -> None:
    port = (sandbox_service.status().endpoint or "").rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert request(host).status == 200, host
    for host in (f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", "attacker.test"):
        assert request(host).status == 403, host
    origin = {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    for method in ("OPTIONS", "GET"):
        response = request(f"127.0.0.1:{port}", method, **origin)
        assert response.getheader("Access-Control-Allow-Origin") is None, method


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "version"])
def test_an_unreadable_state_file_is_refused_and_kept_whole(home: Path, damage: str) -> None:
    if sandbox_service.status().running:
        assert labkit("sandbox", "down").returncode == 0
    state = home / "aws-state.pickle"
    good = state.read_bytes()
    broken = {
        "corrupt": good[:-10] + b"x" * 10,
        "truncated": good[: len(good) // 3],
        "version": good.replace(b'"moto": "', b'"moto": "4.0.0-', 1),
    }[damage]
    state.write_bytes(broken)
    try:
        refused = labkit("sandbox", "up")
        assert refused.returncode == 1
        assert f"{state} cannot be loaded ({damage})" in refused.stderr
        assert "labkit sandbox up --reset" in refused.stderr
        assert "labkit sandbox up --restore" in refused.stderr
        assert str(home / "aws-state.1.pickle") in refused.stderr  # a kept generation is named
        assert state.read_bytes() == broken  # nothing overwritten
        assert not sandbox_service.status().running
    finally:
        state.write_bytes(good)


def test_reset_keeps_the_file_aside_and_restore_brings_it_back(home: Path) -> None:
    state = home / "aws-state.pickle"
    good = state.read_bytes()
    state.write_bytes(good[:100])
    reset = labkit("sandbox", "up", "--reset")
    assert reset.returncode == 0, reset.stderr
    aside = sorted(home.glob("aws-state.2*Z.pickle"))
    assert len(aside) == 1 and aside[0].read_bytes() == good[:100]
    assert f"kept aside as {aside[0]}" in reset.stdout
    buckets = sandbox_target().client("s3").list_buckets()["Buckets"]
    assert buckets == []  # empty

    assert labkit("sandbox", "down").returncode == 0
    kept = home / "kept.pickle"
    kept.write_bytes(good)
    restored = labkit("sandbox", "up", "--restore", str(kept))
    assert restored.returncode == 0, restored.stderr
    names = [b["Name"] for b in sandbox_target().client("s3").list_buckets()["Buckets"]]
    assert names == ["durable-state"]
    assert labkit("sandbox", "down").returncode == 0


#: A service with an object no pickle can take planted in its SNS backend once it has loaded.
PLANTED_SERVICE = """
import threading
import labkit.sandbox.server.service as service

class Planted(service.SandboxService):
    def __init__(self, paths):
        super().__init__(paths)
        from moto.sns.models import sns_backends
        sns_backends["123456789012"]["us-east-1"].planted = threading.Lock()

service.SandboxService = Planted
service.main()
"""


def test_a_failing_save_is_shown_warned_about_and_fails_down(home: Path) -> None:
    assert not sandbox_service.status().running
    last_good = statefile.read_header(home / "aws-state.pickle")
    with (home / "service.log").open("ab") as log:
        planted = subprocess.Popen(
            [sys.executable, "-c", PLANTED_SERVICE], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for("the planted service", lambda: sandbox_service.status().running, timeout_s=60)
        target = sandbox_target()
        target.client("sns").create_topic(Name="made-while-saves-fail")
        ensure_table(target, "durable-ledger")
        wait_for("a failed save", lambda: sandbox_service.status().saves_failing, timeout_s=30)

        shown = labkit("sandbox", "status")
        assert "SAVES ARE FAILING since" in shown.stdout
        assert "sns[123456789012][us-east-1].planted: TypeError: cannot pickle '_thread.lock'" in shown.stdout
        assert f"last good save: {last_good.saved_at}" in shown.stdout

        warned = labkit("ledger", "--table", "durable-ledger")
        assert warned.returncode == 0, warned.stderr
        assert "WARNING: the sandbox cannot save its AWS state since" in warned.stderr
        assert "planted" in warned.stderr

        started = time.monotonic()
        down = labkit("sandbox", "down")
        assert time.monotonic() - started < 60
        assert down.returncode == 1
        assert "its final save failed" in down.stderr and ".planted: TypeError" in down.stderr
        kept = sorted(home.glob("aws-state.unsaved-*.pickle"))
        assert len(kept) == 1 and f"kept as {kept[0]}" in down.stderr
        assert f"labkit sandbox up --restore {kept[0]}" in down.stderr
        assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600
        assert statefile.read_header(home / "aws-state.pickle") == last_good  # the last good save is kept
        assert ".planted" in statefile.read_header(kept[0]).skipped[0]
    finally:
        if planted.poll() is None:
            planted.kill()
        planted.wait()

    restored = labkit("sandbox", "up", "--restore", str(kept[0]))
    assert restored.returncode == 0, restored.stderr
    topics = sandbox_target().client("sns").list_topics()["Topics"]
    assert [t["TopicArn"].rsplit(":", 1)[1] for t in topics] == ["made-while-saves-fail"]
    assert labkit("sandbox", "down").returncode == 0


def test_a_client_stopped_mid_request_holds_up_no_other_request(sandbox: RunningSandbox) -> None:
    """CI22: the fencing test SIGSTOPs a controller at a random moment; stopped between a request's
    headers and its body, it held the sandbox's model lock, and every other client's calls timed out
    (a read timeout of 60 s, four times). The body is now read before the lock is taken."""
    from botocore.config import Config

    host, port = urlsplit(sandbox.endpoint).hostname, urlsplit(sandbox.endpoint).port
    assert host and port
    with socket.create_connection((host, port), timeout=5) as stalled:
        stalled.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 64\r\n\r\n"
        )  # and no body: the sender has stopped
        time.sleep(0.5)  # its handler now waits for the body
        quick = Config(read_timeout=10, connect_timeout=5, retries={"max_attempts": 1})
        started = time.monotonic()
        sandbox.target.client("dynamodb", config=quick).list_tables()
        assert time.monotonic() - started < 10
