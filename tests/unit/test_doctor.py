"""`labkit doctor`: each problem is reported with its fix, and the exit status follows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.lab.doctor import check_kernel, check_provider_source, check_terraform, run_checks


def test_missing_terraform_is_a_failure_with_the_install_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    check = check_terraform()
    assert check.ok is False
    assert "Install Terraform 1.6" in check.fix


def test_provider_source_follows_the_mirror_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_TF_PLUGIN_MIRROR", raising=False)
    assert check_provider_source().ok is None  # the registry: information, not a problem

    monkeypatch.setenv("LABKIT_TF_PLUGIN_MIRROR", str(tmp_path))
    empty = check_provider_source()
    assert empty.ok is False and "has no registry.terraform.io/hashicorp/aws" in empty.detail

    (tmp_path / "registry.terraform.io/hashicorp/aws/5.100.0").mkdir(parents=True)
    assert check_provider_source().ok is True


def test_doctor_exits_non_zero_when_a_check_fails(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "LABKIT_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "labkit.cli", "doctor"], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] terraform" in proc.stdout
    assert "fix: Install Terraform" in proc.stdout


def test_doctor_lists_every_check_for_the_sandbox() -> None:
    names = [c.name for c in run_checks("sandbox")]
    assert names[:5] == ["python", "terraform", "aws provider", "jupyter kernel", "sandbox"]
    # "deploy role" follows only where the sandbox runs global with a deploy role (another test's).
    assert names[5:] in ([], ["deploy role"])


def test_the_kernel_check_finds_the_labs_kernel_or_says_how_to_register_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = check_kernel()
    assert found.ok is True and "'Blue/Green Lab' (bluegreen-lab) runs" in found.detail

    # JUPYTER_PATH is searched first: a kernelspec of the same name there, for another Python, wins.
    stale = tmp_path / "kernels" / "bluegreen-lab"
    stale.mkdir(parents=True)
    argv = ["/opt/other/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (stale / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Blue/Green Lab"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    shadowed = check_kernel()
    assert shadowed.ok is False and "runs /opt/other/bin/python, not this venv's Python" in shadowed.detail
    assert f"Remove {stale}" in shadowed.fix
