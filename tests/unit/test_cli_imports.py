"""What every labkit command pays before it does anything: the modules its CLI imports.

Each command imports the whole command tree (labkit.cli), and the suite, the lessons and the runbooks
start hundreds of commands; pandas alone costs a third of a second of CPU each time. The heavy
libraries are imported by the commands that use them (bench/cli_startup.py measures the effect).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "numpy", "matplotlib", "moto", "papermill", "nbformat", "flask", "sqlalchemy")


def test_the_cli_imports_no_heavy_library_before_a_command_needs_it() -> None:
    code = (
        "import json, sys; import labkit.cli; "
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == []
