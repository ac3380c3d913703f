"""After a controller stopped: is it really gone, may its lock be taken over, and is the Terraform
state lock it left stale?

A deployment lock is taken over (by ``resume``, ``abort`` or ``labkit ledger --force-unlock``) only
when its holder is proven gone (:func:`holder_gone`): on this host, its pid is dead or now runs
another process (a different start time); on any host, its heartbeat is older than the lock's TTL.
The takeover itself is a write conditional on the token that was read (:meth:`Ledger.take_over`),
so two takers cannot both win, and the old holder's next write fails on its token.

A controller killed with SIGKILL leaves its Terraform running (in its own session) until that
apply ends and releases the state lock; :func:`clear_stale_lock` waits for it. Only a lock whose
ID, Who and Created are exactly what the dead controller recorded in the ledger is ever broken.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from labkit.deploy.ledger import Deployment, Ledger, LockHolder, process_start
from labkit.errors import DeployError, DeploymentLockedError, StateLockedError
from labkit.infra.terraform import Terraform

_WHO = re.compile(r"@(?P<host>[^ ]+) pid (?P<pid>\d+)$")
_LOCK_FIELD = re.compile(r"^\s*(ID|Who|Created):\s+(.+?)\s*$", re.MULTILINE)
_CREATED = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?")
#: How long to let an orphaned Terraform finish its apply before giving up on it.
ORPHAN_WAIT_S = 600.0


def controller_alive(who: str) -> bool | None:
    """True/False when ``who`` (``user@host pid N``) ran on this host; None when it cannot be told."""
    match = _WHO.search(who)
    if match is None or match["host"] != socket.gethostname():
        return None
    return _pid_alive(int(match["pid"]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(holder: LockHolder, *, force: bool = False) -> str | None:
    """Why ``holder`` is provably gone, or None when it may still run.

    On this host a live pid with the recorded start time is the holder itself: it counts as gone
    only with ``force`` and a heartbeat older than its TTL (a hung or stopped controller, which the
    fence then stops at its next write). A dead or reused pid is proof on its own. On another host,
    or for a lock without a pid, only the stale heartbeat tells.
    """
    age = holder.heartbeat_age()
    stale = age > holder.ttl_s
    if holder.host == socket.gethostname() and holder.pid is not None:
        if not _pid_alive(holder.pid):
            return f"its process (pid {holder.pid}) has exited"
        started = process_start(holder.pid)
        if holder.pid_start is not None and started is not None and started != holder.pid_start:
            return f"pid {holder.pid} now belongs to another process (started later)"
        if stale and force:
            return f"its heartbeat is {age:.0f} s old (TTL {holder.ttl_s:g} s) though pid {holder.pid} lives"
        return None
    if stale:
        return f"its heartbeat is {age:.0f} s old (TTL {holder.ttl_s:g} s)"
    return None


def refuse_live(holder: LockHolder, action: str) -> DeploymentLockedError:
    """The refusal when ``holder`` may still be working."""
    same_host = holder.host == socket.gethostname()
    return DeploymentLockedError(
        f"Cannot {action}: {holder.env!r} is held by {holder.describe()}, which is still working "
        f"(heartbeat {holder.heartbeat_age():.0f} s ago, TTL {holder.ttl_s:g} s).",
        hint="Let it finish, or stop it first (Ctrl-C rolls back)."
        + (
            " A hung controller on this host is taken over with --force once its heartbeat is older "
            "than the TTL."
            if same_host
            else f" If its host is gone, run this again after {holder.ttl_s:g} s without a heartbeat."
        ),
    )


def take_over(
    ledger: Ledger, env: str, owner: str, action: str, *, force: bool = False
) -> tuple[Deployment | None, LockHolder, str]:
    """Take ``env``'s deployment lock from a holder proven gone, for ``action``.

    Returns the in-progress deployment it continues (None when the holder died before recording
    one), the new lock, and who held it before. Raises :class:`DeploymentLockedError` while the
    holder may still run or when another taker wins, :class:`DeployError` when there is nothing.
    """
    holder = ledger.lock_holder(env)
    record = ledger.active(env)
    if holder is None and record is None:
        raise DeployError(
            f"No deployment of {env} is in progress, so there is nothing to {action}.",
            hint=f"`labkit deploy status {env}` shows the latest one.",
        )
    if holder is not None and record is not None and holder.deployment_id != record.id:
        raise DeploymentLockedError(
            f"{env} is locked by {holder.describe()}, not by deployment {record.id}.",
            hint=f"Wait for that one; `labkit deploy status {env}` shows it.",
        )
    if holder is None and record is not None and record.phase == "paused":
        # Paused for want of evidence: its controller let go of the lock on purpose.
        previous = f"{record.who} (paused)"
    elif holder is None:
        assert record is not None
        # The lock was cleared by hand: only the record tells who ran it.
        alive = controller_alive(record.who)
        if alive or (alive is None and not force):
            raise DeploymentLockedError(
                f"Deployment {record.id}'s controller ({record.who}) "
                + (
                    "is still running."
                    if alive
                    else "ran on another host; it cannot be told whether it runs."
                ),
                hint=f"Make sure it is stopped, then run `labkit deploy {action} {env} --force`.",
            )
        previous = record.who
    else:
        proof = holder_gone(holder, force=force)
        if proof is None:
            raise refuse_live(holder, f"{action} {env}")
        previous = f"{holder.owner} ({proof})"
    lock = ledger.take_over(
        holder, env, owner, record.id if record else holder.deployment_id if holder else "", record=record
    )
    return record, lock, previous


def break_lock(ledger: Ledger, env: str, owner: str) -> str | None:
    """Release ``env``'s lock if its holder is proven gone; who held it (and why gone), or None."""
    holder = ledger.lock_holder(env)
    if holder is None:
        return None
    proof = holder_gone(holder, force=True)
    if proof is None:
        raise refuse_live(holder, f"clear the lock of {env}")
    lock = ledger.take_over(holder, env, owner, holder.deployment_id)
    ledger.release_lock(lock)
    return f"{holder.describe()}; {proof}"


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


def lock_fields(error: StateLockedError) -> dict[str, str]:
    """The ID, Who and Created of the Terraform state lock that ``error`` reports."""
    return {m[1]: m[2] for m in _LOCK_FIELD.finditer("\n".join(error.diagnostics))}


def same_lock(found: dict[str, str], recorded: dict[str, str]) -> bool:
    """Whether the lock an error reports is the recorded one: the same ID, Who and Created.

    Terraform prints Created as Go's ``2006-01-02 15:04:05.999999999 +0000 UTC`` but stores it as
    RFC 3339 (``2006-01-02T15:04:05.999999999Z``); both are UTC, compared to the nanosecond.
    """
    return (
        bool(found.get("ID"))
        and all(found.get(k) == recorded.get(k) for k in ("ID", "Who"))
        and _instant(found.get("Created")) == _instant(recorded.get("Created")) is not None
    )


def _instant(text: str | None) -> str | None:
    match = _CREATED.match(text or "")
    if match is None:
        return None
    return f"{match[1]}T{match[2]}.{(match[3] or '').ljust(9, '0')}"


def wait_for_orphans(terraform: Terraform, say: Callable[[str], None]) -> None:
    """Wait while a Terraform left by a dead controller still works in this stack's data folder."""
    data_dir = terraform.data_dir
    deadline = time.monotonic() + ORPHAN_WAIT_S
    said = False
    while data_dir is not None and (pids := terraform_running_in(data_dir)):
        if time.monotonic() > deadline:
            raise DeployError(
                f"Terraform (pid {', '.join(map(str, pids))}) still runs in {data_dir} after "
                f"{ORPHAN_WAIT_S:g} s.",
                hint="Let it finish or stop it (`kill -INT PID` lets it save its state), then run the "
                "command again.",
            )
        if not said:
            say(f"  the previous controller's terraform (pid {pids[0]}) is still applying; waiting for it")
            said = True
        time.sleep(1.0)


def clear_stale_lock(
    terraform: Terraform, error: StateLockedError, dead: Deployment, say: Callable[[str], None]
) -> None:
    """Force-unlock the state lock in ``error`` only if it is the one ``dead``'s controller recorded.

    ``dead`` is the deployment record as read when its lock was taken over; its
    ``terraform_lock`` holds the ID, Who and Created of the state lock its last apply held.
    """
    found = lock_fields(error)
    recorded = dead.terraform_lock or {}
    if not same_lock(found, recorded):
        seen = ", ".join(f"{k} {found.get(k, '?')}" for k in ("ID", "Who", "Created"))
        raise DeployError(
            f"The Terraform state is locked ({seen}), and it is not the lock the stopped controller "
            "recorded, so it is left alone.",
            hint="If no Terraform runs for this environment any more, clear it with the unlock-state "
            f"runbook (`labkit runbook run unlock-state -p environment {dead.env}`) or `terraform "
            f"force-unlock {found.get('ID') or 'LOCK_ID'}`, then run the command again.",
        ) from error
    say(f"  clearing the Terraform state lock {found['ID']} the stopped controller left ({found['Who']})")
    terraform.force_unlock(found["ID"])
