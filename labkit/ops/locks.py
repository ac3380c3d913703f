"""The ``unlock-state`` runbook's logic: a Terraform state lock left behind, and the proof that its
holder is gone before it is broken.

Terraform records who holds the lock (``ID``, ``Who`` = ``user@host``, ``Operation``, ``Created``)
but not its process, so the holder is proven gone from three sides (:func:`evidence`):

- **host**: the lock was taken on this host; from another host nothing here can tell whether it
  still runs, so the runbook refuses;
- **process**: no Terraform works on this environment on this host: none with the stack's
  Terraform data dir (:func:`labkit.deploy.stale.terraform_running_in`, how the deploy controller
  finds an orphaned apply) and none started by hand in the environment's root folder;
- **deployment**: no live deployment lock in the ledger for the environment (a controller proven
  gone by :func:`labkit.deploy.stale.holder_gone` does not count).

Only then :func:`unlock` force-unlocks by the lock's ID, after reading the lock again: a lock taken
since the diagnosis has another ID and is left alone.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.deploy.ledger import Ledger
from labkit.deploy.stale import holder_gone, terraform_running_in
from labkit.errors import LedgerError, LockHolderAliveError
from labkit.infra.stack import Stack
from labkit.ops.runbook import Action

_CREATED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


@dataclass(frozen=True)
class StateLock:
    """Terraform's lock info, as the backend holds it."""

    id: str
    who: str
    operation: str
    created: datetime | None
    version: str = ""
    path: str = ""

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> StateLock:
        return cls(
            id=str(info.get("ID", "")),
            who=str(info.get("Who", "")),
            operation=str(info.get("Operation", "")),
            created=parse_created(str(info.get("Created", ""))),
            version=str(info.get("Version", "")),
            path=str(info.get("Path", "")),
        )

    @property
    def host(self) -> str:
        """The host in ``Who`` (``user@host``), "" when it names none."""
        return self.who.rpartition("@")[2] if "@" in self.who else ""

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.created is None:
            return None
        return ((now or datetime.now(UTC)) - self.created).total_seconds()

    def describe(self, now: datetime | None = None) -> str:
        age = self.age_s(now)
        since = f"{self.created:%Y-%m-%d %H:%M:%S} UTC" if self.created else "an unknown time"
        return f"lock {self.id} held by {self.who or '?'} for {self.operation or '?'} since {since}" + (
            f" ({age:.0f} s ago)" if age is not None else ""
        )


def parse_created(text: str) -> datetime | None:
    """Terraform's ``Created`` (RFC 3339 with nanoseconds, UTC) as a datetime, None if unreadable."""
    match = _CREATED.match(text.strip())
    if match is None:
        return None
    zone = match[3] or "Z"
    fraction = (match[2] or "0")[:6].ljust(6, "0")  # datetime keeps microseconds
    return datetime.fromisoformat(f"{match[1]}.{fraction}{'+00:00' if zone == 'Z' else zone}")


@dataclass(frozen=True)
class LockFinding:
    """The state lock, if any, and what speaks for and against its holder still running."""

    env: str
    lock: StateLock | None
    alive: tuple[str, ...] = ()  # why the holder may still run
    gone: tuple[str, ...] = field(default=())  # the proofs that it does not

    @property
    def holder_gone(self) -> bool:
        return self.lock is not None and not self.alive

    def __str__(self) -> str:
        if self.lock is None:
            return f"{self.env}'s state is not locked"
        lines = [self.lock.describe()]
        lines += [f"  holder may still run: {why}" for why in self.alive]
        lines += [f"  gone: {proof}" for proof in self.gone]
        return "\n".join(lines)


def read_lock(stack: Stack) -> StateLock | None:
    """The environment's Terraform state lock (:meth:`Stack.state_lock`), or None when it is free."""
    info = stack.state_lock()
    return StateLock.from_info(info) if info is not None else None


def terraform_in_root(root: Path) -> list[int]:
    """Pids of Terraform processes started by hand in ``root``, the environment's folder (Linux
    ``/proc``; [] elsewhere). One with a TF_DATA_DIR of its own is labkit's, for some target and
    LABKIT_HOME: :func:`evidence` finds this stack's by its data dir, and the others work elsewhere."""
    wanted = root.resolve()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if "terraform" not in (entry / "comm").read_text() or Path(os.readlink(entry / "cwd")) != wanted:
                continue
            if not any(v.startswith(b"TF_DATA_DIR=") for v in (entry / "environ").read_bytes().split(b"\0")):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def evidence(stack: Stack, lock: StateLock) -> tuple[list[str], list[str]]:
    """(why the holder may still run, proofs that it is gone) for ``lock`` (see the module doc)."""
    alive: list[str] = []
    gone: list[str] = []
    here = socket.gethostname()
    if lock.host != here:
        alive.append(
            f"it was taken on host {lock.host or '?'!r}, not this one ({here}): whether it still runs "
            "cannot be told from here"
        )
    else:
        data_dir = stack.terraform.data_dir
        pids = sorted(
            set(terraform_running_in(data_dir) if data_dir else []) | set(terraform_in_root(stack.root))
        )
        if pids:
            alive.append(f"Terraform runs for {stack.env} on this host (pid {', '.join(map(str, pids))})")
        else:
            gone.append(f"no Terraform process works on {stack.env} on this host ({here})")
    try:
        holder = Ledger(stack.target, stack.names.ledger_table).lock_holder(stack.env)
    except LedgerError:
        holder = None  # no ledger table yet: no deployment can hold the environment
    if holder is None:
        gone.append(f"no deployment holds {stack.env}")
    elif (proof := holder_gone(holder)) is None:
        alive.append(f"a deployment holds {stack.env}: {holder.describe()}")
    else:
        gone.append(f"the deployment lock's holder is gone ({proof})")
    return alive, gone


def inspect(stack: Stack) -> LockFinding:
    """Read the state lock and the evidence about its holder (only reads)."""
    lock = read_lock(stack)
    if lock is None:
        return LockFinding(stack.env, None)
    alive, gone = evidence(stack, lock)
    return LockFinding(stack.env, lock, tuple(alive), tuple(gone))


def require_gone(finding: LockFinding) -> str:
    """The proof that the holder is gone, or :class:`LockHolderAliveError` saying what may still run."""
    if finding.lock is None:
        return "no lock: nothing to prove"
    if finding.alive:
        raise LockHolderAliveError(
            f"Refusing to break {finding.env}'s {finding.lock.describe()}: its holder may still run ("
            + "; ".join(finding.alive)
            + ").",
            hint="Let it finish (a plan or apply releases the lock when it ends). If it is hung, stop it "
            "(`kill -INT PID` lets Terraform save its state) and run this runbook again; from another "
            "host, check there first.",
        )
    return "; ".join(finding.gone)


def actions(stack: Stack, finding: LockFinding) -> list[Action]:
    """The Plan section's action: force-unlock by ID once the holder is proven gone (a lock-only change)."""
    if finding.lock is None:
        return []
    require_gone(finding)
    lock = finding.lock
    return [Action(f"Force-unlock {lock.describe()}", lambda: unlock(stack, lock), lock_only=True)]


def unlock(stack: Stack, lock: StateLock) -> str:
    """Break ``lock``, after checking it is still the lock held and its holder still gone."""
    now = read_lock(stack)
    if now is None:
        return f"lock {lock.id} was released already"
    if now.id != lock.id:
        raise LockHolderAliveError(
            f"{stack.env}'s state is now held by another lock ({now.describe()}), not {lock.id}.",
            hint="Someone took the lock since the diagnosis; run the runbook again to look at that one.",
        )
    require_gone(inspect(stack))
    stack.force_unlock(lock.id)
    return f"force-unlocked {lock.id}"


def verify_unlocked(stack: Stack) -> tuple[bool, str]:
    """The state lock is free."""
    lock = read_lock(stack)
    return lock is None, "no lock" if lock is None else f"still locked: {lock.describe()}"
