"""After a controller died: is it really gone, and is the Terraform state lock it left stale?

A controller killed with SIGKILL in the middle of an apply leaves Terraform's state lock behind
(its Terraform dies on the broken pipe without unlocking). ``resume`` and ``abort`` clear that lock,
but only when they can tell it is stale: the dead controller ran on this host (its ledger ``who``
is ``user@host pid N``), that pid is gone, and no Terraform process still works in the stack's data
folder. Anything else is left to a person, with the lock id in the message.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from labkit.errors import DeployError, StateLockedError
from labkit.infra.terraform import Terraform

_WHO = re.compile(r"@(?P<host>[^ ]+) pid (?P<pid>\d+)$")
_LOCK_ID = re.compile(r"ID:\s+([0-9a-fA-F-]{8,})")
#: How long to let an orphaned Terraform finish before deciding it is stuck.
ORPHAN_WAIT_S = 60.0


def controller_alive(who: str) -> bool | None:
    """True/False when ``who`` (``user@host pid N``) ran on this host; None when it cannot be told."""
    match = _WHO.search(who)
    if match is None or match["host"] != socket.gethostname():
        return None
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_id(error: StateLockedError) -> str | None:
    """The Terraform lock id that a state-lock error names."""
    match = _LOCK_ID.search("\n".join(error.diagnostics))
    return match[1] if match else None


def terraform_running_in(data_dir: Path) -> list[int]:
    """Pids of Terraform processes whose TF_DATA_DIR is ``data_dir`` (Linux /proc; [] elsewhere)."""
    wanted = f"TF_DATA_DIR={data_dir}".encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0") and entry.name != str(os.getpid()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def clear_stale_lock(
    terraform: Terraform, error: StateLockedError, who: str, say: Callable[[str], None]
) -> None:
    """Force-unlock the state lock in ``error`` if the dead controller ``who`` left it; else raise."""
    found = lock_id(error)
    if found is None or controller_alive(who) is not False:
        raise DeployError(
            "The Terraform state is locked, and it cannot be told that the lock's holder is gone.",
            hint="If no Terraform runs for this environment any more, clear it with the state-lock "
            f"runbook or `terraform force-unlock {found or 'LOCK_ID'}`, then run the command again.",
        ) from error
    data_dir = terraform.data_dir
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while data_dir is not None and (pids := terraform_running_in(data_dir)):
        if time.monotonic() > deadline:
            raise DeployError(
                f"Terraform (pid {', '.join(map(str, pids))}) still runs in {data_dir} after "
                f"{ORPHAN_WAIT_S:g} s.",
                hint="Let it finish or stop it, then run the command again.",
            ) from error
        say(f"  an orphaned terraform (pid {pids[0]}) is still running; waiting for it")
        time.sleep(2.0)
    say(f"  clearing the Terraform state lock {found} left by the dead controller ({who})")
    terraform.force_unlock(found)
