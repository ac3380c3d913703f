"""`labkit release build --no-upload` through the real command line (publishing needs a sandbox:
tests/integration/test_new_user_path.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit import ReleaseError
from labkit.cli import app
from labkit.release.build import read_artifact_manifest

runner = CliRunner()


def test_release_build_writes_the_artifact_with_its_faults(tmp_path: Path, labkit_home: Path) -> None:
    faults = ["--fault", "error_rate=0.3", "--fault", "ready=fail"]
    result = runner.invoke(app, ["release", "build", "1.2.3", *faults, "--out", str(tmp_path), "--no-upload"])
    assert result.exit_code == 0, result.output
    artifact = tmp_path / "release.tar.gz"
    assert f"built {artifact}" in result.output
    manifest = read_artifact_manifest(artifact)
    assert manifest["version"] == "1.2.3"
    assert manifest["faults"] == {"error_rate": 0.3, "ready": "fail"}
    assert "uploaded" not in result.output


def test_release_build_defaults_to_labkit_home(labkit_home: Path) -> None:
    result = runner.invoke(app, ["release", "build", "0.9.0", "--no-upload"])
    assert result.exit_code == 0, result.output
    assert (labkit_home / "releases" / "0.9.0" / "release.tar.gz").is_file()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["1.2.3", "--fault", "latency=200"], "unknown fault key 'latency'"),
        (["1.2.3", "--fault", "error_rate=2"], "must be a number from 0 to 1"),
        (["1.2", "--fault", "error_rate=0.1"], "MAJOR.MINOR.PATCH"),
    ],
)
def test_release_build_refuses_bad_input_and_builds_nothing(
    tmp_path: Path, args: list[str], problem: str
) -> None:
    result = runner.invoke(app, ["release", "build", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, ReleaseError)
    assert problem in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_the_app_group_offers_smoke() -> None:
    result = runner.invoke(app, ["app", "--help"])
    assert result.exit_code == 0
    assert "smoke" in result.output
