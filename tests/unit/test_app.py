"""The release app through Flask's test client: every endpoint, every fault, and refusals at start."""

from __future__ import annotations

import json
import logging
import os
import runpy
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import app as app_package
from app import MAX_WORK_MS, AppConfigError, app_state, create_app, default_release_file
from app.release import ReleaseFileError
from app.shutdown import drain_on_sigterm

GOOD_MANIFEST: dict[str, Any] = {
    "version": "1.2.0",
    "build_time": "2025-01-31T12:00:00+00:00",
    "git_commit": "3f2a9c1",
}


def write_manifest(folder: Path, data: Any) -> Path:
    path = folder / "release.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def make_app(tmp_path: Path, faults: dict[str, Any] | None = None, **config: Any) -> Flask:
    manifest = dict(GOOD_MANIFEST, **({"faults": faults} if faults is not None else {}))
    settings = {"COLOR": "green", "INSTANCE_ID": "i-0abc", "RELEASE_FILE": write_manifest(tmp_path, manifest)}
    return create_app({**settings, **config})


@pytest.fixture()
def client(tmp_path: Path) -> FlaskClient:
    return make_app(tmp_path).test_client()


def test_index_names_color_version_instance_and_host(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_json()
    assert body["color"] == "green"
    assert body["version"] == "1.2.0"
    assert body["instance_id"] == "i-0abc"
    assert isinstance(body["host"], str) and body["host"]


def test_liveness_answers_200(client: FlaskClient) -> None:
    response = client.get("/health/live")
    assert (response.status_code, response.get_json()) == (200, {"status": "live"})


def test_readiness_is_200_for_a_healthy_release(client: FlaskClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_version_returns_the_manifest(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"latency_ms": 0, "ready": "fail"}).test_client()
    response = client.get("/version")
    assert response.status_code == 200
    # Faults equal to a healthy release's are left out; the others are shown.
    assert response.get_json() == {**GOOD_MANIFEST, "faults": {"ready": "fail"}}


def test_work_burns_the_asked_milliseconds(client: FlaskClient) -> None:
    response = client.get("/work?ms=20")
    assert response.status_code == 200
    body = response.get_json()
    assert body["ms"] == 20
    assert body["elapsed_ms"] >= 20
    assert body["rounds"] > 0
    assert client.get("/work?ms=0").status_code == 200


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("", "ms is missing"),
        ("?ms=", "is not a whole number"),
        ("?ms=abc", "is not a whole number"),
        ("?ms=-5", "is not a whole number"),
        ("?ms=2.5", "is not a whole number"),
        (f"?ms={MAX_WORK_MS + 1}", f"is above {MAX_WORK_MS}"),
        ("?ms=" + "9" * 5000, f"is above {MAX_WORK_MS}"),
    ],
)
def test_work_refuses_a_bad_ms_with_400_saying_why(client: FlaskClient, query: str, why: str) -> None:
    response = client.get(f"/work{query}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert why in error
    assert f"from 0 to {MAX_WORK_MS}" in error  # and says what would be accepted


def test_error_rate_1_fails_every_index_request_and_still_names_the_release(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"error_rate": 1}).test_client()
    for _ in range(20):
        response = client.get("/")
        assert response.status_code == 500
        body = response.get_json()
        assert body["error"] == "injected fault: error_rate=1"
        assert (body["color"], body["version"]) == ("green", "1.2.0")
    # Only / is affected: health and work still answer.
    assert client.get("/health/ready").status_code == 200
    assert client.get("/work?ms=1").status_code == 200


def test_error_rate_fails_about_that_share_of_index_requests(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"error_rate": 0.3}, FAULT_SEED=7).test_client()
    statuses = [client.get("/").status_code for _ in range(2000)]
    assert set(statuses) == {200, 500}
    share = statuses.count(500) / len(statuses)
    assert 0.26 <= share <= 0.34, share


def test_latency_ms_delays_index_only(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"latency_ms": 150}).test_client()
    started = time.perf_counter()
    assert client.get("/").status_code == 200
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    assert client.get("/health/live").status_code == 200
    assert time.perf_counter() - started < 0.15


def test_ready_fail_makes_readiness_503_but_liveness_200(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"ready": "fail"}).test_client()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "failing"
    assert "ready=fail" in response.get_json()["reason"]
    assert client.get("/health/live").status_code == 200
    assert client.get("/").status_code == 200


def test_start_delay_makes_readiness_503_until_it_has_passed(tmp_path: Path) -> None:
    client = make_app(tmp_path, faults={"start_delay_s": 0.4}).test_client()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "starting"
    assert client.get("/health/live").status_code == 200
    time.sleep(0.45)
    assert client.get("/health/ready").status_code == 200


def test_draining_makes_readiness_503_while_everything_else_is_served(tmp_path: Path) -> None:
    flask_app = make_app(tmp_path)
    client = flask_app.test_client()
    assert client.get("/health/ready").status_code == 200
    app_state(flask_app).begin_drain()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "draining"
    assert client.get("/").status_code == 200
    assert client.get("/health/live").status_code == 200
    assert client.get("/work?ms=1").status_code == 200


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({k: v for k, v in GOOD_MANIFEST.items() if k != "version"}, "'version' is missing"),
        ({k: v for k, v in GOOD_MANIFEST.items() if k != "git_commit"}, "'git_commit' is missing"),
        ({**GOOD_MANIFEST, "version": "1.2"}, "version must look like MAJOR.MINOR.PATCH"),
        ({**GOOD_MANIFEST, "version": 3}, "version must be a non-empty string"),
        ({**GOOD_MANIFEST, "build_time": "yesterday"}, "build_time must be an ISO 8601 time"),
        ({**GOOD_MANIFEST, "fault": {}}, "unknown key(s) 'fault'"),
        ({**GOOD_MANIFEST, "faults": {"error_rat": 0.3}}, "unknown fault key 'error_rat'"),
        ({**GOOD_MANIFEST, "faults": {"error_rate": 1.5}}, "fault error_rate must be a number from 0 to 1"),
        ({**GOOD_MANIFEST, "faults": {"error_rate": "0.3"}}, "fault error_rate must be a number"),
        ({**GOOD_MANIFEST, "faults": {"error_rate": True}}, "fault error_rate must be a number"),
        ({**GOOD_MANIFEST, "faults": {"latency_ms": 2.5}}, "fault latency_ms must be an integer"),
        ({**GOOD_MANIFEST, "faults": {"latency_ms": -1}}, "fault latency_ms must be an integer"),
        ({**GOOD_MANIFEST, "faults": {"ready": "maybe"}}, "fault ready must be one of ok, fail"),
        ({**GOOD_MANIFEST, "faults": {"start_delay_s": 301}}, "fault start_delay_s must be a number"),
        ({**GOOD_MANIFEST, "faults": [1]}, "faults must be a JSON object"),
    ],
)
def test_a_malformed_release_json_stops_the_app_naming_file_and_problem(
    tmp_path: Path, manifest: Any, problem: str
) -> None:
    path = write_manifest(tmp_path, manifest)
    with pytest.raises(ReleaseFileError) as caught:
        create_app({"COLOR": "blue", "RELEASE_FILE": path})
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_an_unknown_fault_key_in_release_json_lists_the_valid_keys(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, {**GOOD_MANIFEST, "faults": {"latency": 200}})
    with pytest.raises(ReleaseFileError) as caught:
        create_app({"COLOR": "blue", "RELEASE_FILE": path})
    for key in ("error_rate", "latency_ms", "ready", "start_delay_s"):
        assert key in str(caught.value)


def test_a_missing_release_json_stops_the_app(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "release.json"
    with pytest.raises(ReleaseFileError, match="cannot be read"):
        create_app({"COLOR": "blue", "RELEASE_FILE": missing})


def test_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_manifest(tmp_path, GOOD_MANIFEST)
    monkeypatch.setenv("APP_COLOR", "blue")
    monkeypatch.setenv("APP_INSTANCE_ID", "i-0env")
    monkeypatch.setenv("APP_RELEASE_FILE", str(path))
    body = create_app().test_client().get("/").get_json()
    assert (body["color"], body["instance_id"], body["version"]) == ("blue", "i-0env", "1.2.0")


def test_release_json_defaults_to_the_artifact_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_RELEASE_FILE", raising=False)
    assert default_release_file() == Path(app_package.__file__).resolve().parent.parent / "release.json"


def test_app_version_must_match_the_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_manifest(tmp_path, GOOD_MANIFEST)
    monkeypatch.setenv("APP_VERSION", "1.2.0")
    assert create_app({"COLOR": "blue", "RELEASE_FILE": path}).test_client().get("/").status_code == 200
    monkeypatch.setenv("APP_VERSION", "1.3.0")
    with pytest.raises(AppConfigError, match=r"APP_VERSION is '1\.3\.0' but .* is release '1\.2\.0'"):
        create_app({"COLOR": "blue", "RELEASE_FILE": path})


@pytest.mark.parametrize("color", [None, "", "purple", "Blue"])
def test_a_missing_or_unknown_color_stops_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, color: str | None
) -> None:
    monkeypatch.delenv("APP_COLOR", raising=False)
    path = write_manifest(tmp_path, GOOD_MANIFEST)
    config: dict[str, Any] = {"RELEASE_FILE": path}
    if color is not None:
        config["COLOR"] = color
    with pytest.raises(AppConfigError, match="APP_COLOR must be one of blue, green"):
        create_app(config)


class _StandInWorker:
    """What drain_on_sigterm uses of a gunicorn worker: its app, its log and its graceful stop."""

    def __init__(self, wsgi: Flask) -> None:
        self.wsgi = wsgi
        self.log = logging.getLogger("test-worker")
        self.stops: list[float] = []

    def handle_exit(self, sig: int, frame: object) -> None:
        self.stops.append(time.monotonic())


def test_sigterm_drains_first_then_starts_the_graceful_stop_once(tmp_path: Path) -> None:
    flask_app = make_app(tmp_path)
    client = flask_app.test_client()
    worker = _StandInWorker(flask_app)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        drain_on_sigterm(worker, 0.3)
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 2
        while not app_state(flask_app).draining and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/health/ready").status_code == 503
        assert client.get("/").status_code == 200
        assert worker.stops == []  # still serving during the drain
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM schedules nothing more
        while len(worker.stops) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.4)
        assert len(worker.stops) == 1
        assert worker.stops[0] - sent >= 0.3
    finally:
        signal.signal(signal.SIGTERM, previous)


GUNICORN_CONF = Path(app_package.__file__).parent / "gunicorn.conf.py"
APP_SETTINGS = ("APP_BIND", "APP_WORKERS", "APP_THREADS", "APP_GRACEFUL_TIMEOUT", "APP_DRAIN_S")


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf_defaults_suit_ec2_behind_an_alb(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(monkeypatch)
    assert conf["bind"] == ["0.0.0.0:8080"]
    assert conf["wsgi_app"] == "app:create_app()"
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 2, 4)
    assert conf["keepalive"] > 60  # the ALB's idle timeout
    assert conf["_drain_s"] < conf["graceful_timeout"]
    assert conf["accesslog"] == "-"
    assert callable(conf["post_worker_init"])


def test_gunicorn_conf_takes_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(
        monkeypatch,
        APP_BIND="127.0.0.1:0",
        APP_WORKERS="1",
        APP_THREADS="8",
        APP_GRACEFUL_TIMEOUT="12",
        APP_DRAIN_S="0.5",
    )
    assert conf["bind"] == ["127.0.0.1:0"]
    assert (conf["workers"], conf["threads"], conf["graceful_timeout"], conf["_drain_s"]) == (1, 8, 12, 0.5)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"APP_WORKERS": "2.5"}, "APP_WORKERS='2.5' must be a whole number from 1 to 64"),
        ({"APP_THREADS": "many"}, "APP_THREADS='many' must be a whole number"),
        ({"APP_DRAIN_S": "-1"}, "APP_DRAIN_S='-1' must be a number from 0"),
        ({"APP_DRAIN_S": "10", "APP_GRACEFUL_TIMEOUT": "10"}, "APP_DRAIN_S (10) must be below"),
    ],
)
def test_gunicorn_conf_refuses_bad_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        load_gunicorn_conf(monkeypatch, **env)
    assert problem in str(caught.value)
