"""labkit.release.build and unpack_release: fault parsing, versions, the artifact, refusals. No network."""

from __future__ import annotations

import io
import json
import py_compile
import subprocess
import tarfile
from datetime import datetime
from pathlib import Path

import pytest

from app import create_app
from labkit import AppProcessError, ReleaseError
from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import (
    build_release,
    check_version,
    git_commit,
    parse_faults,
    read_artifact_manifest,
    release_key,
    upload_release,
)
from labkit.settings import PROJECT_ROOT, app_dir
from labkit.target import sandbox

FAULT_KEYS = ("error_rate", "latency_ms", "ready", "start_delay_s")


def test_parse_faults_gives_typed_values() -> None:
    faults = parse_faults(["error_rate=0.3", "latency_ms=200", "ready=fail", "start_delay_s=5"])
    assert faults == {"error_rate": 0.3, "latency_ms": 200, "ready": "fail", "start_delay_s": 5.0}
    assert isinstance(faults["latency_ms"], int)
    assert parse_faults([]) == {}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("error_rat=0.3", "unknown fault key 'error_rat'"),
        ("error_rate", "is not KEY=VALUE"),
        ("=0.3", "is not KEY=VALUE"),
        ("error_rate=1.5", "must be a number from 0 to 1"),
        ("error_rate=abc", "must be a number from 0 to 1"),
        ("error_rate=nan", "must be a number from 0 to 1"),
        ("latency_ms=2.5", "must be an integer from 0 to 10000"),
        ("latency_ms=-1", "must be an integer from 0 to 10000"),
        ("latency_ms=10001", "must be an integer from 0 to 10000"),
        ("ready=maybe", "must be one of ok, fail"),
        ("start_delay_s=inf", "must be a number from 0 to 300"),
    ],
)
def test_parse_faults_refuses_with_the_list_of_valid_keys(item: str, problem: str) -> None:
    with pytest.raises(ReleaseError) as caught:
        parse_faults([item])
    message = str(caught.value)
    assert problem in message
    for key in FAULT_KEYS:
        assert key in message


def test_parse_faults_refuses_a_key_given_twice() -> None:
    with pytest.raises(ReleaseError, match="given twice"):
        parse_faults(["error_rate=0.1", "error_rate=0.2"])


@pytest.mark.parametrize("version", ["0.0.1", "1.4.0", "10.20.30", "2.0.0-rc.1", "1.0.0-hotfix-2"])
def test_good_versions(version: str) -> None:
    assert check_version(version) == version
    assert release_key(version) == f"releases/{version}/release.tar.gz"


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0/x", "", "1.0.0 "])
def test_bad_versions_are_refused_with_the_expected_shape(version: str) -> None:
    with pytest.raises(ReleaseError) as caught:
        check_version(version)
    assert "MAJOR.MINOR.PATCH" in str(caught.value)
    assert repr(version) in str(caught.value)


def _members(artifact: Path) -> list[str]:
    with tarfile.open(artifact, "r:gz") as tar:
        return tar.getnames()


def test_build_release_packs_the_app_and_its_manifest(labkit_home: Path, tmp_path: Path) -> None:
    # Make sure there is bytecode beside the app's sources, so leaving it out is really checked.
    py_compile.compile(str(app_dir() / "release.py"), doraise=True)
    assert any((app_dir() / "__pycache__").iterdir())

    artifact = build_release("1.4.0", {"error_rate": "0.3", "latency_ms": 200}, tmp_path / "out")
    assert artifact == tmp_path / "out" / "release.tar.gz"
    names = _members(artifact)
    for required in ("release.json", "app/__init__.py", "app/release.py", "app/shutdown.py"):
        assert required in names
    assert "app/gunicorn.conf.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(n in ("release.json", "requirements.txt", "app") or n.startswith("app/") for n in names)
    # The fleet's user data pip-installs the root's requirements.txt: the app's own, copied.
    with tarfile.open(artifact, "r:gz") as tar:
        packed = tar.extractfile("requirements.txt")
        assert packed is not None and packed.read() == (app_dir() / "requirements.txt").read_bytes()

    manifest = read_artifact_manifest(artifact)
    head = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert manifest["version"] == "1.4.0"
    assert manifest["git_commit"] == head
    assert datetime.fromisoformat(manifest["build_time"]).tzinfo is not None
    assert manifest["faults"] == {"error_rate": 0.3, "latency_ms": 200}


def test_build_release_defaults_to_labkit_home(labkit_home: Path) -> None:
    artifact = build_release("0.1.0")
    assert artifact == labkit_home / "releases" / "0.1.0" / "release.tar.gz"
    assert "faults" not in read_artifact_manifest(artifact)


def test_the_app_accepts_what_labkit_builds(tmp_path: Path) -> None:
    artifact = build_release("3.0.0-rc.1", {"ready": "fail"}, tmp_path)
    release_dir = unpack_release(artifact, tmp_path / "unpacked")
    client = create_app({"COLOR": "blue", "RELEASE_FILE": release_dir / "release.json"}).test_client()
    assert client.get("/version").get_json()["version"] == "3.0.0-rc.1"
    assert client.get("/health/ready").status_code == 503


def test_build_release_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"MAJOR\.MINOR\.PATCH"):
        build_release("1.0", None, tmp_path / "a")
    with pytest.raises(ReleaseError) as caught:
        build_release("1.0.0", {"error_rate": 2}, tmp_path / "b")
    assert "error_rate" in str(caught.value) and "start_delay_s" in str(caught.value)
    with pytest.raises(ReleaseError, match="unknown fault key"):
        build_release("1.0.0", {"colour": "red"}, tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_git_commit_is_unknown_outside_a_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


APP_FILES = {"app/__init__.py": b"", "app/gunicorn.conf.py": b""}
STAMP = {"build_time": "2025-01-01T00:00:00", "git_commit": "x"}


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (b"{oops", "not valid JSON"),
        (json.dumps(STAMP).encode(), "'version' is missing"),
        (json.dumps({"version": "1.0.0", **STAMP, "faults": {"x": 1}}).encode(), "unknown fault key 'x'"),
    ],
)
def test_labkit_refuses_an_artifact_with_a_malformed_manifest(
    tmp_path: Path, manifest: bytes, problem: str
) -> None:
    artifact = _tar(tmp_path / "bad.tar.gz", {"release.json": manifest, **APP_FILES})
    with pytest.raises(ReleaseError) as caught:
        read_artifact_manifest(artifact)
    assert "Malformed release manifest" in str(caught.value)
    assert f"{artifact}!release.json" in str(caught.value)
    assert problem in str(caught.value)


def test_labkit_refuses_a_file_that_is_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"holds no release\.json"):
        read_artifact_manifest(_tar(tmp_path / "empty.tar.gz", APP_FILES))
    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("hello")
    with pytest.raises(ReleaseError, match="not a readable release artifact"):
        read_artifact_manifest(not_a_tar)


def test_upload_refuses_an_artifact_of_another_version_before_touching_s3(tmp_path: Path) -> None:
    artifact = build_release("1.0.0", None, tmp_path)
    # Port 9 (discard) on loopback: a call that reached S3 would fail differently.
    target = sandbox(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ReleaseError, match=r"is release 1\.0\.0, not 2\.0\.0"):
        upload_release(target, "artifacts", artifact, "2.0.0")


def test_unpack_release_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    artifact = build_release("1.0.0", None, tmp_path / "out")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("from another version")
    with pytest.raises(ReleaseError, match="already holds files"):
        unpack_release(artifact, dest)


def test_unpack_release_refuses_an_archive_that_is_not_a_release(tmp_path: Path) -> None:
    artifact = _tar(tmp_path / "x.tar.gz", {"app/__init__.py": b""})
    with pytest.raises(ReleaseError, match=r"lacks release\.json, app/gunicorn\.conf\.py"):
        unpack_release(artifact, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_unpack_release_refuses_entries_outside_the_folder(tmp_path: Path) -> None:
    artifact = _tar(tmp_path / "evil.tar.gz", {"release.json": b"{}", **APP_FILES, "../escaped.txt": b"x"})
    with pytest.raises(ReleaseError, match="Cannot unpack"):
        unpack_release(artifact, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


def test_app_process_refuses_a_folder_that_is_not_a_release(tmp_path: Path) -> None:
    with pytest.raises(AppProcessError, match="is not an unpacked release"):
        AppProcess.start(tmp_path, color="blue", instance_id="i-1", log_path=tmp_path / "app.log")
