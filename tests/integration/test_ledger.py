"""The deployment ledger against moto's DynamoDB server: records, events, the lock and its races."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from labkit.cli import app as cli
from labkit.deploy.ledger import Ledger, default_owner, ensure_table, new_deployment_id
from labkit.deploy.stale import holder_gone
from labkit.deploy.strategy import canary, linear
from labkit.errors import DeploymentLockedError, DeploymentLockLostError, LabkitError, LedgerError
from labkit.target import Target
from labkit.target import sandbox as sandbox_target
from tests.conftest import RunningSandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target(moto_endpoint: str) -> Target:
    return sandbox_target(moto_endpoint)


@pytest.fixture()
def ledger(target: Target) -> Ledger:
    """A fresh table per test, so tests never see each other's records."""
    return Ledger(target, ensure_table(target, f"ledger-{uuid.uuid4().hex[:8]}"))


def test_ensure_table_is_idempotent_and_refuses_a_foreign_table(target: Target) -> None:
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    assert ensure_table(target, name) == name
    assert ensure_table(target, name) == name  # a second call finds it
    described = target.client("dynamodb").describe_table(TableName=name)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}

    other = f"other-{uuid.uuid4().hex[:8]}"
    target.client("dynamodb").create_table(
        TableName=other,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(LedgerError, match="not pk \\(HASH\\) and sk \\(RANGE\\)"):
        ensure_table(target, other)


def test_a_missing_table_says_how_to_create_it(target: Target) -> None:
    with pytest.raises(LedgerError) as info:
        Ledger(target, "no-such-ledger").list()
    assert "'no-such-ledger' does not exist on the sandbox target" in str(info.value)
    assert "global" in str(info.value.hint) and "ensure_table" in str(info.value.hint)


def test_the_lock_refuses_a_second_taker_and_says_who_holds_it(ledger: Ledger) -> None:
    taken = ledger.acquire_lock("staging", "alice@box pid 1", "dep-1")
    assert ledger.lock_holder("staging") == taken
    assert ledger.lock_holder("production") is None

    with pytest.raises(DeploymentLockedError) as info:
        ledger.acquire_lock("staging", "bob@box pid 2", "dep-2")
    message = str(info.value)
    assert "Environment 'staging' is locked by alice@box pid 1 (deployment dep-1) since " in message
    assert f"{taken.acquired_at:%Y-%m-%d %H:%M:%S} UTC" in message
    assert "labkit deploy abort staging" in str(info.value.hint)
    assert "labkit ledger staging --force-unlock" in str(info.value.hint)
    assert isinstance(info.value, LabkitError)

    # Another environment has a lock of its own.
    ledger.acquire_lock("production", "bob@box pid 2", "dep-2")

    # Only the holder releases: a release is conditional on the holder's token.
    impostor = replace(taken, owner="bob@box pid 2", token="not-alices")
    with pytest.raises(DeploymentLockLostError, match=r"bob@box pid 2 no longer holds .* alice@box pid 1"):
        ledger.release_lock(impostor)
    assert ledger.lock_holder("staging") == taken

    assert ledger.release_lock(taken) is True
    assert ledger.lock_holder("staging") is None
    assert ledger.release_lock(taken) is False  # nothing left to release
    ledger.acquire_lock("staging", "bob@box pid 2", "dep-3")  # free again


class _AnswerLost:
    """The ledger's DynamoDB client with the answers to some writes lost: each such call runs, its
    answer never arrives, and the SDK's retry of it runs again and is the answer the ledger sees (on
    AWS, or on a server that does not give a retry the answer it lost)."""

    def __init__(self, client: Any, operations: set[str]) -> None:
        self._client = client
        self._operations = operations
        self.lost: list[str] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in self._operations:
            return call

        def landed_then_retried(**kwargs: Any) -> Any:
            call(**kwargs)
            self.lost.append(name)
            return call(**kwargs)

        return landed_then_retried


def test_a_lock_write_whose_answer_was_lost_is_still_the_callers(ledger: Ledger) -> None:
    """An SDK's retry of a conditional write that landed fails its own condition: the ledger reads
    what it finds and knows its own token, so the caller holds what it took (it is not refused by
    itself, and the lock is not left held by no one)."""
    client = _AnswerLost(ledger._client, {"put_item", "transact_write_items"})
    ledger._client = client
    taken = ledger.acquire_lock("staging", "alice@box pid 1", "dep-1")
    assert ledger.lock_holder("staging") == taken
    record = ledger.start("staging", "2.0.0", from_color="blue", to_color="green", strategy=canary(),
                          deployment_id="dep-1", lock=taken)  # fmt: skip
    assert ledger.get("dep-1") == record
    moved = ledger.take_over(taken, "staging", "bob@box pid 2", "dep-1", record=record)
    assert ledger.lock_holder("staging") == moved
    assert ledger.get("dep-1").lock_token == moved.token
    assert client.lost == ["put_item", "transact_write_items", "transact_write_items"]
    # Someone else's lock is still refused, answer lost or not.
    with pytest.raises(DeploymentLockedError, match="locked by bob@box pid 2"):
        ledger.acquire_lock("staging", "carol@box pid 3", "dep-2")
    # A record id already taken by another deployment is still refused.
    ledger.release_lock(moved)
    with pytest.raises(LedgerError, match="already in the ledger"):
        ledger.start("staging", "3.0.0", from_color="green", to_color="blue", strategy=canary(),
                     deployment_id="dep-1")  # fmt: skip


def test_a_takeover_is_conditional_on_the_token_it_read_and_fences_the_old_holder(ledger: Ledger) -> None:
    first = ledger.acquire_lock("staging", "alice@box pid 1", "dep-1")
    record = ledger.start(
        "staging",
        "v2",
        from_color="blue",
        to_color="green",
        strategy=canary(),
        deployment_id="dep-1",
        lock=first,
    )
    assert record.lock_token == first.token
    ledger.update(record.id, step_index=0, weight=10, token=first.token)
    beat = ledger.heartbeat(first)
    assert beat.heartbeat_at is not None and beat.heartbeat_at >= (first.heartbeat_at or first.acquired_at)

    # Two takers read the same lock; the first write wins, the second finds the token changed.
    second = ledger.take_over(first, "staging", "bob@box pid 2", record.id, record=record)
    with pytest.raises(DeploymentLockedError, match=r"changed hands .* now held by bob@box pid 2"):
        ledger.take_over(first, "staging", "carol@box pid 3", record.id, record=record)
    assert ledger.lock_holder("staging") == second
    assert ledger.get(record.id).lock_token == second.token

    # The old holder can neither renew, nor write the record or an event, nor release.
    for write in (
        lambda: ledger.heartbeat(first),
        lambda: ledger.update(record.id, weight=50, token=first.token),
        lambda: ledger.finish(record.id, "succeeded", "late", token=first.token),
        lambda: ledger.release_lock(first),
    ):
        with pytest.raises(DeploymentLockLostError, match="taken over by bob@box pid 2"):
            write()
    with pytest.raises(DeploymentLockLostError), ledger.event(record.id, "shift-50", token=first.token):
        pass
    # Nor can anyone write it without a token.
    with pytest.raises(DeploymentLockLostError):
        ledger.update(record.id, weight=50)
    assert ledger.get(record.id).weight == 10
    assert [e.phase for e in ledger.events(record.id)] == []

    # The new holder can.
    with ledger.event(record.id, "shift-50", token=second.token):
        ledger.update(record.id, step_index=1, weight=50, token=second.token)
    assert ledger.finish(record.id, "succeeded", "done", token=second.token).status == "succeeded"
    assert ledger.release_lock(second) is True


def _race(
    ledger: Ledger, env: str, name: str, barrier: threading.Barrier, winners: list[str], refusals: list[str]
) -> None:
    barrier.wait(timeout=30)
    try:
        ledger.acquire_lock(env, name, f"dep-{name}")
        winners.append(name)
    except DeploymentLockedError as exc:
        refusals.append(str(exc))


def test_threads_racing_for_the_lock_exactly_one_wins(ledger: Ledger, target: Target) -> None:
    racers = 8
    # One Ledger per thread, as separate controllers would have.
    ledgers = [Ledger(target, ledger.table) for _ in range(racers)]
    for round_ in range(5):
        env = f"race-{round_}"
        barrier = threading.Barrier(racers)
        winners: list[str] = []
        refusals: list[str] = []
        threads = [
            threading.Thread(target=_race, args=(ledgers[i], env, f"racer-{i}", barrier, winners, refusals))
            for i in range(racers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        assert len(refusals) == racers - 1
        holder = ledger.lock_holder(env)
        assert holder is not None and holder.owner == winners[0]
        assert all(f"locked by {winners[0]} (deployment dep-{winners[0]})" in text for text in refusals)


def _race_in_process(
    endpoint: str, table: str, env: str, name: str, barrier: object, results: object
) -> None:
    from labkit.deploy.ledger import Ledger
    from labkit.errors import DeploymentLockedError
    from labkit.target import sandbox

    ledger = Ledger(sandbox(endpoint), table)
    barrier.wait(timeout=60)  # type: ignore[attr-defined]  # every process fires at the same moment
    try:
        ledger.acquire_lock(env, name, f"dep-{name}")
        results.put((name, "won"))  # type: ignore[attr-defined]
    except DeploymentLockedError as exc:
        results.put((name, str(exc)))  # type: ignore[attr-defined]


def test_processes_racing_for_the_lock_exactly_one_wins(ledger: Ledger, moto_endpoint: str) -> None:
    racers = 4
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(racers)
    processes = [
        context.Process(
            target=_race_in_process,
            args=(moto_endpoint, ledger.table, "staging", f"proc-{i}", barrier, results),
        )
        for i in range(racers)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = dict(results.get(timeout=90) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    holder = ledger.lock_holder("staging")
    assert holder is not None and holder.owner == winners[0]
    for name, outcome in outcomes.items():
        if name != winners[0]:
            assert f"locked by {winners[0]} (deployment dep-{winners[0]})" in outcome


def test_a_deployment_is_recorded_as_it_happens(ledger: Ledger) -> None:
    strategy = canary([10, 50, 100], bake_s=1)
    dep = ledger.start(
        "staging", "v2", from_color="blue", to_color="green", strategy=strategy, who="ci", from_version="v1"
    )
    assert dep.status == "in_progress" and dep.step_index == -1 and dep.weight == 0 and dep.phase == "started"
    assert ledger.get(dep.id) == dep
    assert ledger.active("staging") == dep
    assert ledger.active("production") is None

    with ledger.event(dep.id, "wait-healthy", detail="2 targets") as ev:
        assert ledger.get(dep.id).phase == "wait-healthy"
        running = ledger.events(dep.id)
        assert [(e.phase, e.outcome, e.ended_at) for e in running] == [("wait-healthy", "running", None)]
        ev.detail = "2/2 healthy"
    moved = ledger.update(dep.id, step_index=0, weight=10)
    assert (moved.step_index, moved.weight, moved.phase) == (0, 10, "wait-healthy")

    with pytest.raises(RuntimeError), ledger.event(dep.id, "analysis"):
        raise RuntimeError("5xx rate 30 % over 1 %")

    final = ledger.finish(dep.id, "rolled_back", "analysis failed at 10 %: 5xx rate 30 % over 1 %")
    assert final.status == "rolled_back"
    assert final.ended_at is not None and final.duration_s is not None and final.duration_s >= 0
    assert final.strategy == strategy
    assert final.from_version == "v1" and final.who == "ci"
    assert ledger.active("staging") is None

    events = ledger.events(dep.id)
    assert [(e.phase, e.outcome, e.detail) for e in events] == [
        ("wait-healthy", "ok", "2/2 healthy"),
        ("analysis", "error", "RuntimeError: 5xx rate 30 % over 1 %"),
    ]
    assert all(e.ended_at is not None and e.duration_s is not None and e.duration_s >= 0 for e in events)
    assert events[0].started_at <= events[1].started_at


def test_a_finished_deployment_is_not_changed(ledger: Ledger) -> None:
    dep = ledger.start("staging", "v2", from_color="blue", to_color="green", strategy=linear(50))
    ledger.finish(dep.id, "succeeded", "all traffic on v2")
    with pytest.raises(LedgerError, match="already succeeded \\(all traffic on v2\\)"):
        ledger.finish(dep.id, "aborted", "late abort")
    with pytest.raises(LedgerError, match="already succeeded"):
        ledger.update(dep.id, weight=0)
    assert ledger.get(dep.id).status == "succeeded"


def test_bad_calls_are_refused_with_a_reason(ledger: Ledger) -> None:
    dep = ledger.start("staging", "v2", from_color="blue", to_color="green", strategy=linear(50))
    with pytest.raises(LedgerError, match="'in_progress' is not a final status"):
        ledger.finish(dep.id, "in_progress", "x")
    with pytest.raises(LedgerError, match="Weight 150 is not a percentage"):
        ledger.update(dep.id, weight=150)
    with pytest.raises(LedgerError, match="already in the ledger"):
        ledger.start(
            "staging", "v3", from_color="blue", to_color="green", strategy=linear(50), deployment_id=dep.id
        )
    with pytest.raises(LedgerError, match="No deployment 'nope'"):
        ledger.get("nope")
    with pytest.raises(LedgerError, match="No deployment 'nope' to record"), ledger.event("nope", "shift"):
        pass
    assert ledger.events("nope") == []  # nothing half-written
    with pytest.raises(LedgerError, match="No deployment 'nope'"):
        ledger.update("nope", phase="x")


def test_list_is_newest_first_and_filters_by_env(ledger: Ledger) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    ids = []
    for minutes, env in enumerate(["staging", "production", "staging"]):
        dep_id = new_deployment_id(base + timedelta(minutes=minutes))
        ids.append(dep_id)
        ledger.start(
            env, f"v{minutes}", from_color="blue", to_color="green", strategy=linear(50), deployment_id=dep_id
        )
    assert [d.id for d in ledger.list()] == ids[::-1]
    assert [d.id for d in ledger.list("staging")] == [ids[2], ids[0]]
    assert ledger.list("nowhere") == []

    frame = ledger.to_dataframe("staging")
    assert list(frame["id"]) == [ids[2], ids[0]]
    assert list(frame["strategy"]) == ["linear", "linear"]
    assert str(frame["started_at"].dtype).startswith("datetime64") and frame["ended_at"].isna().all()


def test_events_dataframe_has_one_row_per_phase(ledger: Ledger) -> None:
    dep = ledger.start("staging", "v2", from_color="blue", to_color="green", strategy=linear(50))
    for phase in ("apply-idle", "wait-healthy", "shift-50"):
        with ledger.event(dep.id, phase):
            pass
    frame = ledger.events_dataframe(dep.id)
    assert list(frame["phase"]) == ["apply-idle", "wait-healthy", "shift-50"]
    assert list(frame["outcome"]) == ["ok", "ok", "ok"]
    assert (frame["duration_s"] >= 0).all()
    assert list(frame.columns) == ["phase", "started_at", "ended_at", "duration_s", "outcome", "detail"]


_CONTROLLER = textwrap.dedent(
    """
    import sys, time
    from labkit.deploy.ledger import Ledger, default_owner
    from labkit.deploy.strategy import canary
    from labkit.target import sandbox

    ledger = Ledger(sandbox(sys.argv[1]), sys.argv[2])
    owner = default_owner()
    dep_id = sys.argv[3]
    lock = ledger.acquire_lock("staging", owner, dep_id)
    ledger.start("staging", "v2", from_color="blue", to_color="green", strategy=canary(),
                 deployment_id=dep_id, who=owner, lock=lock)
    with ledger.event(dep_id, "shift-10", token=lock.token):
        ledger.update(dep_id, step_index=0, weight=10, token=lock.token)
    with ledger.event(dep_id, "shift-50", token=lock.token):
        ledger.update(dep_id, step_index=1, weight=50, token=lock.token)
        print("mid-shift", flush=True)
        time.sleep(120)  # killed here
    """
)


def test_a_controller_killed_mid_shift_leaves_what_resume_needs(ledger: Ledger, moto_endpoint: str) -> None:
    dep_id = new_deployment_id()
    with subprocess.Popen(  # the with block closes the pipe and waits
        [sys.executable, "-c", _CONTROLLER, moto_endpoint, ledger.table, dep_id],
        stdout=subprocess.PIPE,
        text=True,
    ) as controller:
        try:
            assert controller.stdout is not None
            assert controller.stdout.readline().strip() == "mid-shift"
            os.kill(controller.pid, signal.SIGKILL)
            assert controller.wait(timeout=10) == -signal.SIGKILL
        finally:
            if controller.poll() is None:
                controller.kill()

    record = ledger.active("staging")
    assert record is not None and record.id == dep_id
    assert (record.status, record.phase, record.step_index, record.weight) == (
        "in_progress",
        "shift-50",
        1,
        50,
    )
    assert record.strategy == canary()
    events = ledger.events(dep_id)
    assert [(e.phase, e.outcome) for e in events] == [("shift-10", "ok"), ("shift-50", "running")]
    assert events[-1].ended_at is None
    holder = ledger.lock_holder("staging")
    assert holder is not None and holder.deployment_id == dep_id
    assert holder.owner.endswith(f"pid {controller.pid}") and holder.owner != default_owner()

    # What abort does with it: prove the holder gone, take the lock over, record the outcome, release.
    assert holder.pid == controller.pid and "has exited" in str(holder_gone(holder))
    mine = ledger.take_over(holder, "staging", default_owner(), dep_id, record=record)
    ledger.finish(dep_id, "aborted", "controller killed mid-shift; weight restored to 0", token=mine.token)
    assert ledger.release_lock(mine) is True
    assert ledger.lock_holder("staging") is None and ledger.active("staging") is None


# -- the command line, on the session's real sandbox ------------------------------------------


def test_cli_lists_shows_and_force_unlocks(sandbox: RunningSandbox) -> None:
    table = ensure_table(sandbox.target, f"ledger-cli-{uuid.uuid4().hex[:8]}")
    book = Ledger(sandbox.target, table)
    done = book.start(
        "staging",
        "1.1.0",
        from_color="blue",
        to_color="green",
        strategy=canary(),
        who="ci",
        from_version="1.0.0",
    )
    with book.event(done.id, "shift-10") as ev:
        ev.detail = "green at 10%"
    book.finish(done.id, "rolled_back", "analysis failed: green 5xx rate too high")
    running = book.start(
        "staging", "1.2.0", from_color="blue", to_color="green", strategy=linear(50), who="ci"
    )
    listed_lock = book.acquire_lock("staging", "ci-runner pid 7", running.id)
    book.start("production", "1.0.0", from_color="green", to_color="blue", strategy=canary(), who="ci")

    runner = CliRunner()
    listed = runner.invoke(cli, ["ledger", "staging", "--table", table])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith(f"lock: ci-runner pid 7 (deployment {running.id}) since ")
    rows = [line for line in lines if line.startswith(("2", "1"))]
    assert [row.split()[0] for row in rows] == [running.id, done.id]  # newest first, staging only
    assert "rolled_back" in rows[1] and "analysis failed: green 5xx rate too high" in rows[1]
    assert "in_progress" in rows[0] and "started, green at 0%" in rows[0]

    as_json = runner.invoke(cli, ["ledger", "staging", "--table", table, "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert document["lock"]["owner"] == "ci-runner pid 7"
    assert [d["id"] for d in document["deployments"]] == [running.id, done.id]
    assert document["deployments"][1]["status"] == "rolled_back"

    everything = runner.invoke(cli, ["ledger", "--table", table, "--limit", "2"])
    assert everything.exit_code == 0 and "... 1 older; --limit shows more" in everything.output

    shown = runner.invoke(cli, ["ledger", "--table", table, "--show", done.id])
    assert shown.exit_code == 0, shown.output
    assert f"deployment {done.id}: staging 1.0.0 (blue) -> 1.1.0 (green)" in shown.output
    assert "canary: 10% (bake 5s) -> 50% (bake 5s) -> 100% (bake 5s)" in shown.output
    assert "status    rolled_back" in shown.output
    assert "ok      shift-10" in shown.output and "green at 10%" in shown.output

    # Its holder (this very process) renews nothing, but until the TTL has passed it may be working.
    book.release_lock(listed_lock)
    book.acquire_lock("staging", "ci-runner pid 7", running.id, ttl_s=2.0)
    refused = runner.invoke(cli, ["ledger", "staging", "--table", table, "--force-unlock"])
    assert isinstance(refused.exception, DeploymentLockedError), refused.output
    assert "which is still working" in str(refused.exception)
    time.sleep(2.2)
    unlocked = runner.invoke(cli, ["ledger", "staging", "--table", table, "--force-unlock"])
    assert unlocked.exit_code == 0, unlocked.output
    assert f"released staging's lock, held by ci-runner pid 7 (deployment {running.id})" in unlocked.output
    assert book.lock_holder("staging") is None
    again = runner.invoke(cli, ["ledger", "staging", "--table", table, "--force-unlock"])
    assert "staging was not locked" in again.output


def test_cli_says_when_the_table_is_missing(sandbox: RunningSandbox) -> None:
    result = CliRunner().invoke(cli, ["ledger", "--table", "no-such-ledger"])
    assert isinstance(result.exception, LedgerError)
    assert "'no-such-ledger' does not exist" in str(result.exception)
