"""The fenced deployment lock under a race of real processes on the sandbox's DynamoDB (issue 11).

Each round starts two controllers at once on one environment, while two resumers (one with
``--force``) and an abort keep trying to take over for the whole test. Then the round's winner is
left to finish, SIGKILLed, or SIGSTOPped past its lock's TTL and continued. Every racer is the
controller's own code (lock, heartbeat, fence, takeover) in its own process; only Terraform is
left out (an "apply" is the controller's fence check and a line in a shared log, see
``fence_worker.py``). The checks: at most one process ever applies at a time and an owner never
applies again once its lock was taken over; no live, running controller is ever taken over (by a
resume or an abort); a stopped one that wakes up stops, saying who took over.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from labkit.deploy.ledger import Ledger, ensure_table
from labkit.settings import PROJECT_ROOT
from tests.conftest import RunningSandbox, wait_for
from tests.integration.fence_worker import ENV, STEP_S, STEPS, TTL_S

pytestmark = pytest.mark.integration

#: Rounds run until this many seconds have passed (each takes 3-10 s).
RACE_S = 60.0
ACTIONS = ("finish", "kill", "stop")


def _worker(
    role: str, sandbox: RunningSandbox, table: str, log: Path, until: float = 0.0, go: Path | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.fence_worker",
            role,
            sandbox.endpoint,
            table,
            str(log),
            str(until),
            str(go),
        ],
        cwd=PROJECT_ROOT,
        text=True,
    )


def _taken_from(ledger: Ledger, pid: int) -> bool:
    holder = ledger.lock_holder(ENV)
    return holder is None or holder.pid != pid


def _entries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_controllers_and_resumers_racing_never_apply_together(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    table = ensure_table(sandbox.target, f"fence-{uuid.uuid4().hex[:8]}")
    ledger = Ledger(sandbox.target, table)
    log = tmp_path / "race.jsonl"
    log.touch()
    started = time.monotonic()
    until = time.time() + RACE_S + 60  # the takers outlast the last round
    takers = [_worker(role, sandbox, table, log, until) for role in ("resume", "resume-force", "abort")]
    rounds: list[tuple[str, int]] = []  # (action, winner pid)
    rng = random.Random(11)
    go = tmp_path / "go-0"
    pending = ([_worker("controller", sandbox, table, log, go=go) for _ in range(2)], go)
    controllers: list[subprocess.Popen[str]] = []
    try:
        while time.monotonic() - started < RACE_S:
            action = ACTIONS[len(rounds) % len(ACTIONS)]
            round_start = time.monotonic()
            mark = len(_entries(log))
            controllers, go = pending
            # The next round's pair starts now, so its imports overlap this round.
            go_next = tmp_path / f"go-{len(rounds) + 1}"
            pending = ([_worker("controller", sandbox, table, log, go=go_next) for _ in range(2)], go_next)
            go.touch()
            pids = {c.pid for c in controllers}

            def outcome(mark: int = mark, pids: set[int] = pids) -> dict[int, str] | None:
                # Each controller's first note is its race's result ("won" or "refused"); a later
                # one ("lost", "finished") must not hide it, however late this poll comes.
                seen: dict[int, str] = {}
                for entry in _entries(log)[mark:]:
                    if entry["pid"] in pids:
                        seen.setdefault(entry["pid"], entry["event"])
                return seen if len(seen) == 2 or "won" in seen.values() else None

            first = wait_for("a controller to win the lock", outcome, timeout_s=60, every_s=0.05)
            winners = [pid for pid, event in first.items() if event == "won"]
            assert winners, f"round {len(rounds) + 1}: no controller won: {_entries(log)[mark:]}"
            winner = winners[0]
            rounds.append((action, winner))
            print(
                f"round {len(rounds)} ({action}): won after {time.monotonic() - round_start:.1f} s",
                flush=True,
            )
            proc = next(c for c in controllers if c.pid == winner)
            time.sleep(rng.uniform(0.0, STEPS * STEP_S))  # anywhere: before its record, mid-step, ...
            if action == "kill":
                proc.send_signal(signal.SIGKILL)
            elif action == "stop":
                proc.send_signal(signal.SIGSTOP)
                time.sleep(TTL_S + 2.0)  # its heartbeat goes stale: only --force may take over
                wait_for("a takeover", lambda pid=winner: _taken_from(ledger, pid), timeout_s=30)
                proc.send_signal(signal.SIGCONT)
            for c in controllers:
                c.wait(timeout=60)
            wait_for(
                "the round's deployment to end",
                lambda: ledger.lock_holder(ENV) is None and ledger.active(ENV) is None,
                timeout_s=60,
            )
    finally:
        for p in pending[0] + controllers:
            p.kill()
            p.wait(timeout=30)
        for p in takers:
            p.terminate()
        for p in takers:
            p.wait(timeout=30)
    entries = _entries(log)
    print(f"{len(rounds)} rounds in {time.monotonic() - started:.0f} s: {[a for a, _ in rounds]}")

    # Every round had exactly one winner of the two controllers.
    assert len(rounds) >= len(ACTIONS)
    # Applies: each token belongs to one process, and tokens never interleave: once a later holder
    # applied, no earlier one applies again.
    applies = sorted((e for e in entries if e["event"] == "apply"), key=lambda e: e["t"])
    owner_of: dict[str, int] = {}
    retired: set[str] = set()
    current = None
    for entry in applies:
        assert owner_of.setdefault(entry["token"], entry["pid"]) == entry["pid"]
        assert entry["token"] not in retired, f"a fenced-out holder applied: {entry}"
        if entry["token"] != current:
            if current is not None:
                retired.add(current)
            current = entry["token"]
    tokens_taken = {e["old_token"] for e in entries if e["event"] == "took"}
    for action, winner in rounds:
        mine = [e for e in entries if e["pid"] == winner]
        events = [e["event"] for e in mine]
        if action == "finish":
            # A live controller is never taken over: not by a resume, not by an abort.
            assert events[-1] == "finished", mine
            assert mine[0]["token"] not in tokens_taken
        elif action == "stop":
            # Taken over while stopped (by the --force resume only), it stops when it wakes up.
            assert events[-1] in ("lost", "finished"), mine
            if events[-1] == "lost":
                assert "taken over by" in mine[-1]["message"] or "released" in mine[-1]["message"]
            takeovers = [e for e in entries if e["event"] == "took" and e["old_token"] == mine[0]["token"]]
            assert all(e["role"] == "resume-force" for e in takeovers), takeovers
    # Something was taken over after each kill, or the killed one had not recorded its deployment.
    assert any(e["event"] == "took" for e in entries)
