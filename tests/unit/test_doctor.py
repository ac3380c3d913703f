"""`labkit doctor`: each problem is reported with its fix, and the exit status follows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labkit.lab.doctor import check_provider_source, check_terraform, run_checks


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
    assert names == ["python", "terraform", "aws provider", "sandbox"]
