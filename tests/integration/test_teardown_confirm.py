"""`labkit run notebooks/09-teardown.ipynb -p target aws` without its own opt-in refuses before it
calls AWS at all (issue 11, item 8).

"AWS" here is a closed loopback port (AWS_ENDPOINT_URL): any call, changing or not, would fail with a
connection error instead of the refusal, so the refusal proves that nothing was called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.settings import PROJECT_ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.integration

TEARDOWN = PROJECT_ROOT / "notebooks" / "09-teardown.ipynb"


def _run_teardown_on_aws(out: Path, *parameters: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "not-a-key",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "labkit", "run", str(TEARDOWN), "-p", "target", "aws", *parameters,
         "--out", str(out), "--quiet"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ((), "Refusing to destroy staging on AWS without confirm='staging'"),
        (("-p", "confirm", "production"), "Refusing to destroy staging on AWS without confirm='staging'"),
        (("-p", "confirm", "staging"), "Refusing to tear down global on AWS (us-east-1) without the account"),
    ],
)
def test_teardown_on_aws_refuses_without_confirmation_before_any_call(
    tmp_path: Path, parameters: tuple[str, ...], refusal: str
) -> None:
    result = _run_teardown_on_aws(tmp_path / "run", *parameters)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert refusal in output
    assert "StackError" in output
    for call_made in ("EndpointConnectionError", "Could not connect"):
        assert call_made not in output
    # It stopped in the guard cell, before the first cell that reads (or destroys) anything.
    executed = json.loads(next((tmp_path / "run").rglob("09-teardown.ipynb")).read_text())["cells"]
    failed = [
        i for i, c in enumerate(executed) if any(o["output_type"] == "error" for o in c.get("outputs", []))
    ]
    assert len(failed) == 1 and "confirm_destroy" in "".join(executed[failed[0]]["source"])
    assert all(not c.get("outputs") for c in executed[failed[0] + 1 :])
