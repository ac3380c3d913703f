"""Instance apps left running by a sandbox service that died: found by their pid files, killed.

Both sides use it: ``labkit sandbox down`` after a hard kill of the service, and the service itself
when it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def kill_leftovers(root: Path) -> list[int]:
    """SIGKILL the process groups of apps listed in ``root/*/app.pid`` that still run; their pids.

    Only a process that still looks like a gunicorn is killed (where /proc tells), so a reused
    pid never takes an unrelated process down.
    """
    killed = []
    for pid_file in root.glob("*/app.pid"):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_app(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return killed


def _is_app(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc (macOS): the pid file is all there is to go by
    with contextlib.suppress(OSError):
        return b"gunicorn" in cmdline.read_bytes()
    return False
