"""checkov over terraform/: no failed check, and every skip carries its reason in the code.

checkov lives in its own venv (`.venv-tools/`, made by `make tools`, which `make test` runs first),
apart from labkit's dependencies.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from labkit.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

CHECKOV = PROJECT_ROOT / ".venv-tools" / "bin" / "checkov"
CONFIG = PROJECT_ROOT / ".checkov.yaml"


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make tools` (or `make test`, which does).")
    proc = subprocess.run(
        [str(CHECKOV), "--config-file", str(CONFIG), "--output", "json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    # checkov exits 1 when a check fails; anything else (or no JSON) is a broken run.
    assert proc.returncode in (0, 1), f"checkov did not run:\n{proc.stderr}"
    return dict(json.loads(proc.stdout))


def test_no_failed_check(report: dict[str, object]) -> None:
    summary = report["summary"]
    results = report["results"]
    assert isinstance(summary, dict) and isinstance(results, dict)
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in results["failed_checks"]]
    assert failed == [], "checkov failed checks (fix them, or skip in the code with a reason):\n" + "\n".join(
        failed
    )
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0
    # It really scanned the stack: every module's resources, through the environments and examples.
    assert summary["passed"] > 100 and summary["resource_count"] > 50


def test_every_skip_is_in_the_code_with_a_reason(report: dict[str, object]) -> None:
    results = report["results"]
    assert isinstance(results, dict)
    for check in results["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    assert "skip-check" not in CONFIG.read_text(), "skip in the code beside the resource, not globally"
