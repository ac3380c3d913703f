"""A self-contained lesson run the way `make lab` runs it: `labkit run` on a sandbox with nothing
built, in a private LABKIT_HOME, the sandbox stopped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from labkit.settings import PROJECT_ROOT


def run_lesson(
    lesson: Path, tmp_path: Path, *parameters: str, timeout_s: float
) -> tuple[list[dict[str, Any]], str]:
    """Run ``lesson`` with ``-p NAME VALUE`` ``parameters``; fail with its output unless it passed.
    Returns the executed copy's cell outputs and all the text they printed."""
    out = tmp_path / "run"
    env = {**os.environ, "LABKIT_HOME": str(tmp_path / "home")}
    env.pop("LABKIT_SANDBOX_HOME", None)
    command = [sys.executable, "-m", "labkit", "run", str(lesson), "--out", str(out), "--quiet", *parameters]
    try:
        proc = subprocess.run(
            command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s
        )
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "sandbox", "down"], env=env, capture_output=True)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    cells = json.loads((out / lesson.name).read_text())["cells"]
    outputs = [o for cell in cells for o in cell.get("outputs", [])]
    return outputs, printed(outputs)


def printed(outputs: list[dict[str, Any]]) -> str:
    """All the text cell ``outputs`` show: their streams and their displays' plain text."""
    return "".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
