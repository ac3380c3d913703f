"""The release app under real gunicorn on loopback, started and stopped through AppProcess;
and a release's round trip through S3 (moto's server) to a running app, as the sandbox does it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit import AppProcessError, ReleaseError
from labkit.cli import app as cli
from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release, release_exists, upload_release
from labkit.target import sandbox
from tests.conftest import free_port

pytestmark = pytest.mark.integration

VERSION = "1.0.0"
#: Tests that are not about draining stop quickly.
QUICK_DRAIN_S = 0.2


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(VERSION, None, tmp_path_factory.mktemp("artifact"))


@pytest.fixture()
def release_dir(artifact: Path, tmp_path: Path) -> Path:
    return unpack_release(artifact, tmp_path / "release")


@pytest.fixture()
def started() -> Iterator[list[AppProcess]]:
    """Every AppProcess a test starts; whatever still runs at the end is killed."""
    processes: list[AppProcess] = []
    yield processes
    for proc in processes:
        if proc.running:
            proc.kill()


def wait_for(check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` (bounded in time) and return when it first held; fail the test otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.02)
    pytest.fail(f"not true within {timeout_s} s")


def refused(proc: AppProcess) -> bool:
    try:
        proc.get("/health/live", timeout=1.0)
    except OSError:
        return True
    return False


def test_serves_every_endpoint_on_a_free_loopback_port(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    proc = AppProcess.start(
        release_dir,
        color="blue",
        instance_id="i-0aaa",
        log_path=tmp_path / "app.log",
        version=VERSION,
        drain_s=QUICK_DRAIN_S,
    )
    started.append(proc)
    assert proc.running and proc.port > 0
    assert proc.url == f"http://127.0.0.1:{proc.port}"

    status, body = proc.get("/")
    assert status == 200
    assert {k: json.loads(body)[k] for k in ("color", "version", "instance_id")} == {
        "color": "blue",
        "version": VERSION,
        "instance_id": "i-0aaa",
    }
    assert proc.get("/health/live")[0] == 200
    assert proc.get("/health/ready")[0] == 200
    assert json.loads(proc.get("/version")[1])["version"] == VERSION
    assert proc.get("/work?ms=5")[0] == 200
    assert proc.get("/work?ms=nope")[0] == 400
    # The access log reaches the log file (written just after the response, hence the wait).
    wait_for(lambda: '"GET /work?ms=nope HTTP/1.1" 400' in proc.log_tail(), timeout_s=2.0)

    assert proc.stop() == 0
    assert not proc.running
    assert refused(proc)


def test_listens_on_the_port_it_is_given(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    port = free_port()
    proc = AppProcess.start(
        release_dir,
        color="green",
        instance_id="i-0bbb",
        log_path=tmp_path / "app.log",
        port=port,
        drain_s=QUICK_DRAIN_S,
    )
    started.append(proc)
    assert proc.port == port
    assert json.loads(proc.get("/")[1])["color"] == "green"
    proc.stop()


def test_a_port_in_use_is_refused(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    first = AppProcess.start(
        release_dir, color="blue", instance_id="i-0one", log_path=tmp_path / "one.log", drain_s=QUICK_DRAIN_S
    )
    started.append(first)
    with pytest.raises(AppProcessError) as caught:
        started.append(
            AppProcess.start(
                release_dir,
                color="green",
                instance_id="i-0two",
                log_path=tmp_path / "two.log",
                port=first.port,
            )
        )
    assert f"Cannot serve the app on 127.0.0.1:{first.port}: Address already in use" in str(caught.value)
    assert json.loads(first.get("/")[1])["instance_id"] == "i-0one"  # the first one is untouched
    first.stop()


def test_sigterm_drains_then_lets_the_in_flight_request_finish(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    drain_s, graceful_timeout_s, work_ms = 1.5, 8, 3000
    proc = AppProcess.start(
        release_dir,
        color="green",
        instance_id="i-0drain",
        log_path=tmp_path / "app.log",
        threads=4,
        drain_s=drain_s,
        graceful_timeout_s=graceful_timeout_s,
    )
    started.append(proc)
    assert proc.get("/health/ready")[0] == 200

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(proc.get, f"/work?ms={work_ms}", 20.0)
        time.sleep(0.3)  # let the slow request reach the app
        assert not slow.done()

        sigterm_at = time.monotonic()
        stopping = pool.submit(proc.stop)  # SIGTERM, then wait for the exit

        # Readiness turns 503 at once, while the worker still serves everything else.
        turned_503_at = wait_for(lambda: proc.get("/health/ready", timeout=2.0)[0] == 503, timeout_s=1.0)
        assert turned_503_at - sigterm_at < drain_s
        status, body = proc.get("/health/ready", timeout=2.0)
        assert (status, json.loads(body)["status"]) == (503, "draining")
        assert proc.get("/", timeout=2.0)[0] == 200
        assert proc.get("/health/live", timeout=2.0)[0] == 200

        # The request that was in flight when SIGTERM came completes with 200.
        status, body = slow.result(timeout=graceful_timeout_s)
        finished_at = time.monotonic()
        assert status == 200
        answer = json.loads(body)
        assert answer["ms"] == work_ms
        assert finished_at - answer["elapsed_ms"] / 1000 < sigterm_at  # it started before SIGTERM

        code = stopping.result(timeout=graceful_timeout_s + 10)
        exited_at = time.monotonic()

    assert code == 0
    assert exited_at - sigterm_at < graceful_timeout_s
    assert not proc.running
    assert refused(proc)
    log = proc.log_tail(50)
    assert "SIGTERM: draining for 1.5 s" in log
    assert "SIGKILL" not in log  # the stop was graceful, nothing had to be killed


def test_kill_takes_master_and_workers_down_at_once(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    proc = AppProcess.start(
        release_dir, color="blue", instance_id="i-0crash", log_path=tmp_path / "app.log", workers=2
    )
    started.append(proc)
    assert proc.get("/")[0] == 200
    assert proc.kill() == -9
    assert not proc.running
    # The workers hold the listening socket too: refused at once means they died with the master.
    wait_for(lambda: refused(proc), timeout_s=0.5)


def test_a_malformed_release_json_stops_the_app_at_start(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    manifest = release_dir / "release.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "faults": {"error_rate": 3}}))
    with pytest.raises(AppProcessError) as caught:
        started.append(
            AppProcess.start(release_dir, color="blue", instance_id="i-0bad", log_path=tmp_path / "app.log")
        )
    message = str(caught.value)
    assert "exited with code" in message
    assert f"{manifest}: fault error_rate must be a number from 0 to 1, got 3" in message


def test_an_artifact_of_another_version_stops_the_app_at_start(
    release_dir: Path, tmp_path: Path, started: list[AppProcess]
) -> None:
    with pytest.raises(AppProcessError) as caught:
        started.append(
            AppProcess.start(
                release_dir, color="blue", instance_id="i-0v", log_path=tmp_path / "app.log", version="9.9.9"
            )
        )
    manifest = release_dir / "release.json"
    assert f"APP_VERSION is '9.9.9' but {manifest} is release '{VERSION}'" in str(caught.value)


def test_labkit_app_smoke_passes() -> None:
    result = CliRunner().invoke(cli, ["app", "smoke"])
    assert result.exit_code == 0, result.output
    checks = [line for line in result.output.splitlines() if line.startswith("  ok   ")]
    assert len(checks) == 6  # five endpoints and the graceful stop
    assert "FAIL" not in result.output
    assert result.output.rstrip().endswith("smoke test passed")


def test_release_round_trip_through_s3_to_a_running_app(
    moto_endpoint: str, tmp_path: Path, started: list[AppProcess]
) -> None:
    target = sandbox(endpoint_url=moto_endpoint)
    s3 = target.client("s3")
    bucket = "bluegreen-artifacts-roundtrip"
    s3.create_bucket(Bucket=bucket)
    version = "2.1.0-rc.1"

    artifact = build_release(version, {"error_rate": "1", "latency_ms": "50"}, tmp_path / "build")
    assert not release_exists(target, bucket, version)
    uri = upload_release(target, bucket, artifact, version)
    assert uri == f"s3://{bucket}/releases/{version}/release.tar.gz"
    assert release_exists(target, bucket, version)
    assert not release_exists(target, bucket, "2.1.0")

    # Releases are immutable unless overwrite is asked for.
    with pytest.raises(ReleaseError, match="already in"):
        upload_release(target, bucket, artifact, version)
    assert upload_release(target, bucket, artifact, version, overwrite=True) == uri
    with pytest.raises(ReleaseError, match="does not exist"):
        upload_release(target, "no-such-bucket", artifact, version)

    # What an instance does: fetch the object, unpack it, serve it.
    fetched = tmp_path / "fetched.tar.gz"
    s3.download_file(bucket, f"releases/{version}/release.tar.gz", str(fetched))
    assert fetched.read_bytes() == artifact.read_bytes()
    proc = AppProcess.start(
        unpack_release(fetched, tmp_path / "instance"),
        color="green",
        instance_id="i-0s3",
        log_path=tmp_path / "app.log",
        drain_s=QUICK_DRAIN_S,
    )
    started.append(proc)
    status, body = proc.get("/")
    assert status == 500  # error_rate=1: every answer fails, and still says which release it is
    assert (json.loads(body)["version"], json.loads(body)["color"]) == (version, "green")
    assert json.loads(proc.get("/version")[1])["faults"] == {"error_rate": 1.0, "latency_ms": 50}
    proc.stop()
