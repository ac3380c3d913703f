"""The deployment ledger: deployments, their timed events and the per-environment lock, in DynamoDB.

One table with a string partition key ``pk`` and sort key ``sk``, billed on demand (the Terraform
``global`` environment creates it; :func:`ensure_table` makes one for tests and the sandbox). Items:

- ``pk="DEPLOYMENT"``, ``sk=<id>``: one record per deployment (:class:`Deployment`). Ids start
  with a UTC timestamp, so records sort by start time. Deployments are rare, so one partition
  holds them all and listing them is a single query.
- ``pk="EVENTS#<id>"``, ``sk=<started_at>#<nonce>``: that deployment's timed events (:class:`Event`).
- ``pk="LOCK#<env>"``, ``sk="LOCK"``: the environment's deployment lock, taken with a conditional
  write, so of two controllers exactly one gets it.

Every change is written the moment it happens and nothing lives only in memory: a controller
killed with SIGKILL leaves an ``in_progress`` record holding its phase, step index and weight, an
event without an end, and its lock, from which ``labkit deploy resume`` continues or
``labkit deploy abort`` rolls back.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from botocore.exceptions import BotoCoreError, ClientError

from labkit.deploy.strategy import Strategy, from_dict
from labkit.errors import ConditionalWriteFailed, DeploymentLockedError, DeploymentLockLostError, LedgerError
from labkit.settings import user_at_host
from labkit.target import Target

if TYPE_CHECKING:  # pandas costs a third of a second to import: only the tables need it
    import pandas as pd

DeploymentStatus = Literal["in_progress", "succeeded", "rolled_back", "aborted"]
STATUSES: tuple[DeploymentStatus, ...] = get_args(DeploymentStatus)
FINAL_STATUSES: tuple[DeploymentStatus, ...] = ("succeeded", "rolled_back", "aborted")
EventOutcome = Literal["running", "ok", "error"]

_RECORDS_PK = "DEPLOYMENT"
_LOCK_SK = "LOCK"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def new_deployment_id(now: datetime | None = None) -> str:
    """A fresh deployment id that sorts by time, e.g. ``20250301T101500123456Z-3f9a1c``."""
    # Microseconds, so deployments started within one second still sort in the order they began.
    return f"{(now or _now()).astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def default_owner() -> str:
    """Who is deploying, as the lock and the record show it: ``user@host pid N``."""
    return f"{user_at_host()} pid {os.getpid()}"


#: Seconds after its last heartbeat that a lock's holder counts as gone (the controller renews it
#: every LOCK_TTL_S / 6 from a background thread while it works).
LOCK_TTL_S = 30.0


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as the kernel counts it (Linux ``/proc``), or None.

    Together with the pid and the host it names one process: a pid reused by a later process has
    another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its last ")" do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22, starttime in clock ticks since boot


@dataclass(frozen=True)
class LockHolder:
    """Who holds an environment's deployment lock, for which deployment, and since when.

    ``token`` fences the holder: every write it makes is conditional on it, and a takeover replaces
    it (see :meth:`Ledger.take_over`). ``host``, ``pid`` and ``pid_start`` name the holding process;
    ``heartbeat_at`` is its last renewal, and after ``ttl_s`` without one the holder counts as gone.
    """

    env: str
    owner: str
    deployment_id: str
    acquired_at: datetime
    token: str = ""
    heartbeat_at: datetime | None = None
    ttl_s: float = LOCK_TTL_S
    host: str = ""
    pid: int | None = None
    pid_start: str | None = None

    def heartbeat_age(self, now: datetime | None = None) -> float:
        """Seconds since the holder last renewed the lock."""
        return ((now or _now()) - (self.heartbeat_at or self.acquired_at)).total_seconds()

    def describe(self, now: datetime | None = None) -> str:
        age = ((now or _now()) - self.acquired_at).total_seconds()
        return (
            f"{self.owner} (deployment {self.deployment_id}) since "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, {_duration_text(age)} ago"
        )


@dataclass(frozen=True)
class Deployment:
    """One deployment's record.

    ``weight`` is the new color's share of traffic in percent; ``step_index`` the strategy step
    being worked on (-1 before the first); ``phase`` the name of the latest event. Together with
    ``strategy`` they are what a resumed controller continues from.
    """

    id: str
    env: str
    version: str
    from_version: str | None
    from_color: str
    to_color: str
    strategy: Strategy
    status: DeploymentStatus
    phase: str
    step_index: int
    weight: int
    reason: str | None
    who: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    #: The token of the deployment lock whose holder may write this record (None: written unfenced).
    lock_token: str | None = None
    #: The Terraform state lock (ID, Who, Created) its controller's latest apply held.
    terraform_lock: dict[str, str] | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Event:
    """A timed phase of a deployment. ``ended_at`` is None while it runs (or if the controller died)."""

    deployment_id: str
    key: str
    phase: str
    started_at: datetime
    ended_at: datetime | None
    outcome: EventOutcome
    detail: str | None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


class EventHandle:
    """What ``with ledger.event(...) as ev`` yields: set ``ev.detail`` to record what happened."""

    def __init__(self, deployment_id: str, key: str, phase: str, detail: str | None) -> None:
        self.deployment_id = deployment_id
        self.key = key
        self.phase = phase
        self.detail = detail


class Ledger:
    """The deployment ledger in the DynamoDB table ``table`` of ``target``."""

    def __init__(self, target: Target, table: str) -> None:
        self.target = target
        self.table = table
        self._client: Any = target.client("dynamodb")

    # -- the lock ---------------------------------------------------------------------------

    def acquire_lock(
        self, env: str, owner: str, deployment_id: str, *, ttl_s: float = LOCK_TTL_S
    ) -> LockHolder:
        """Take ``env``'s deployment lock, or raise :class:`DeploymentLockedError` naming the holder."""
        for _attempt in range(3):
            holder = _new_holder(env, owner, deployment_id, ttl_s)
            try:
                self._call(
                    "put_item",
                    TableName=self.table,
                    Item=_lock_item(holder),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return holder
            except ConditionalWriteFailed:
                current = self.lock_holder(env)
                if current is not None and current.token == holder.token:
                    return holder  # our write landed and its answer was lost; the SDK's retry met it
                if current is not None:
                    raise _locked_error(current) from None
                # released between our write and our read: try again
        raise LedgerError(
            f"The deployment lock of {env!r} kept changing hands while it was being taken.",
            hint="Another controller is taking and releasing it; try again in a moment.",
        )

    def heartbeat(self, lock: LockHolder) -> LockHolder:
        """Renew ``lock``'s heartbeat; raises :class:`DeploymentLockLostError` if it was taken over."""
        now = _now()
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(_lock_pk(lock.env), _LOCK_SK),
                UpdateExpression="SET heartbeat_at = :now",
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":now": _s(_iso(now)), ":token": _s(lock.token)},
            )
        except ConditionalWriteFailed:
            raise self._lost(lock.env, lock.owner) from None
        return replace(lock, heartbeat_at=now)

    def release_lock(self, lock: LockHolder) -> bool:
        """Release ``lock`` if its holder still holds it (a write conditional on its token).

        False when no one held it; raises :class:`DeploymentLockLostError` when someone else holds it
        now: only the holder releases.
        """
        try:
            self._call(
                "delete_item",
                TableName=self.table,
                Key=_key(_lock_pk(lock.env), _LOCK_SK),
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": _s(lock.token)},
            )
        except ConditionalWriteFailed:
            if self.lock_holder(lock.env) is None:
                return False
            raise self._lost(lock.env, lock.owner) from None
        return True

    def take_over(
        self,
        seen: LockHolder | None,
        env: str,
        owner: str,
        deployment_id: str,
        *,
        record: Deployment | None = None,
        ttl_s: float = LOCK_TTL_S,
    ) -> LockHolder:
        """Replace the lock ``seen`` (None: no lock was seen) with one held by ``owner``, and hand
        ``record`` (the deployment it continues) to the new holder, in one transaction.

        Both writes are conditional on what was read: the lock still carries ``seen``'s token (or is
        still absent) and the record still carries its ``lock_token``. So of two processes taking over
        the same lock, one wins and the other gets :class:`DeploymentLockedError`; and the old holder's
        next write fails on its token. The caller must first prove ``seen``'s holder is gone
        (:func:`labkit.deploy.stale.holder_gone`).
        """
        holder = _new_holder(env, owner, deployment_id, ttl_s)
        if seen is None:
            lock_condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            lock_condition = _token_condition(seen.token or None)
        writes: builtins.list[dict[str, Any]] = [
            {"Put": {"TableName": self.table, "Item": _lock_item(holder), **lock_condition}}
        ]
        if record is not None:
            condition = _token_condition(record.lock_token, attribute="lock_token")
            writes.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(_RECORDS_PK, record.id),
                        "UpdateExpression": "SET lock_token = :new, updated_at = :now",
                        **condition,
                        "ConditionExpression": condition["ConditionExpression"] + " AND #status = :running",
                        "ExpressionAttributeNames": {
                            **condition.get("ExpressionAttributeNames", {}),
                            "#status": "status",
                        },
                        "ExpressionAttributeValues": {
                            **condition.get("ExpressionAttributeValues", {}),
                            ":new": _s(holder.token),
                            ":now": _s(_iso(holder.acquired_at)),
                            ":running": _s("in_progress"),
                        },
                    }
                }
            )
        try:
            self._call("transact_write_items", TransactItems=writes)
        except ConditionalWriteFailed:
            current = self.lock_holder(env)
            if current is not None and current.token == holder.token:
                return holder  # our transaction landed and its answer was lost; the retry met it
            raise DeploymentLockedError(
                f"The deployment lock of {env!r} changed hands while {owner} was taking it over"
                + (f": it is now held by {current.describe()}." if current else "."),
                hint=f"Another resume or abort got there first; `labkit deploy status {env}` shows who.",
            ) from None
        return holder

    def lock_holder(self, env: str) -> LockHolder | None:
        """Who holds ``env``'s lock now, or None."""
        item = self._get_item(_lock_pk(env), _LOCK_SK)
        return _lock_from_item(item) if item else None

    def _lost(self, env: str, owner: str) -> DeploymentLockLostError:
        current = self.lock_holder(env)
        who = f"taken over by {current.describe()}" if current else "released by someone else"
        return DeploymentLockLostError(
            f"{owner} no longer holds the deployment lock of {env!r}: it was {who}. "
            "This controller stops here and changes nothing more.",
            hint=f"`labkit deploy status {env}` shows who continues the deployment.",
        )

    # -- deployment records -----------------------------------------------------------------

    def start(
        self,
        env: str,
        version: str,
        *,
        from_color: str,
        to_color: str,
        strategy: Strategy,
        who: str | None = None,
        from_version: str | None = None,
        deployment_id: str | None = None,
        lock: LockHolder | None = None,
    ) -> Deployment:
        """Record a new ``in_progress`` deployment and return it.

        With ``lock`` (taken with :meth:`acquire_lock`) the record is written only while that lock
        holds, and every later write to it must give the lock's token (``token=``). A record written
        without one is for history and tests: nothing fences it.
        """
        now = _now()
        deployment = Deployment(
            id=deployment_id or new_deployment_id(now),
            env=env,
            version=version,
            from_version=from_version,
            from_color=from_color,
            to_color=to_color,
            strategy=strategy,
            status="in_progress",
            phase="started",
            step_index=-1,
            weight=0,
            reason=None,
            who=who or default_owner(),
            started_at=now,
            updated_at=now,
            ended_at=None,
            lock_token=lock.token if lock else None,
        )
        item = {
            "pk": _s(_RECORDS_PK),
            "sk": _s(deployment.id),
            "id": _s(deployment.id),
            "env": _s(env),
            "version": _s(version),
            "from_color": _s(from_color),
            "to_color": _s(to_color),
            "strategy": _s(json.dumps(strategy.to_dict())),
            "status": _s(deployment.status),
            "phase": _s(deployment.phase),
            "step_index": _n(deployment.step_index),
            "weight": _n(deployment.weight),
            "who": _s(deployment.who),
            "started_at": _s(_iso(now)),
            "updated_at": _s(_iso(now)),
        }
        if from_version is not None:
            item["from_version"] = _s(from_version)
        put = {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        try:
            if lock is None:
                self._call("put_item", **put)
            else:
                item["lock_token"] = _s(lock.token)
                check = {"TableName": self.table, "Key": _key(_lock_pk(env), _LOCK_SK)}
                self._call(
                    "transact_write_items",
                    TransactItems=[
                        {"ConditionCheck": {**check, **_token_condition(lock.token)}},
                        {"Put": put},
                    ],
                )
        except ConditionalWriteFailed:
            if lock is not None and getattr(self.lock_holder(env), "token", None) != lock.token:
                raise self._lost(env, lock.owner) from None
            if self._get_item(_RECORDS_PK, deployment.id) == item:
                return deployment  # our write landed and its answer was lost; the SDK's retry met it
            raise LedgerError(
                f"A deployment with id {deployment.id!r} is already in the ledger.",
                hint="Leave deployment_id out to get a fresh one.",
            ) from None
        return deployment

    def update(
        self,
        deployment_id: str,
        *,
        phase: str | None = None,
        step_index: int | None = None,
        weight: int | None = None,
        reason: str | None = None,
        terraform_lock: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Deployment:
        """Record progress of an in-progress deployment; arguments left as None stay as they are.

        ``token`` is the deployment lock's (see :meth:`start`); a write whose token is not the
        record's raises :class:`DeploymentLockLostError`.
        """
        changes: dict[str, dict[str, str]] = {"updated_at": _s(_iso(_now()))}
        if phase is not None:
            changes["phase"] = _s(phase)
        if step_index is not None:
            changes["step_index"] = _n(step_index)
        if weight is not None:
            if not 0 <= weight <= 100:
                raise LedgerError(
                    f"Weight {weight} is not a percentage.", hint="Record a weight from 0 to 100."
                )
            changes["weight"] = _n(weight)
        if reason is not None:
            changes["reason"] = _s(reason)
        if terraform_lock is not None:
            changes["terraform_lock"] = _s(json.dumps(terraform_lock, sort_keys=True))
        return self._update_in_progress(deployment_id, changes, token)

    def finish(
        self, deployment_id: str, status: DeploymentStatus, reason: str, *, token: str | None = None
    ) -> Deployment:
        """End a deployment as succeeded, rolled_back or aborted, with the reason people will read."""
        if status not in FINAL_STATUSES:
            raise LedgerError(
                f"{status!r} is not a final status.", hint=f"Finish with one of: {', '.join(FINAL_STATUSES)}."
            )
        now = _iso(_now())
        return self._update_in_progress(
            deployment_id,
            {"status": _s(status), "reason": _s(reason), "ended_at": _s(now), "updated_at": _s(now)},
            token,
        )

    def get(self, deployment_id: str) -> Deployment:
        """The deployment ``deployment_id``; raises :class:`LedgerError` when there is none."""
        item = self._get_item(_RECORDS_PK, deployment_id)
        if item is None:
            raise LedgerError(
                f"No deployment {deployment_id!r} in the ledger table {self.table!r}.",
                hint="`labkit ledger` lists the deployments and their ids.",
            )
        return _deployment_from_item(item)

    def list(self, env: str | None = None) -> builtins.list[Deployment]:
        """Deployments, newest first; only ``env``'s when given."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(_RECORDS_PK)},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        if env is not None:
            query["FilterExpression"] = "env = :env"
            query["ExpressionAttributeValues"][":env"] = _s(env)
        return [_deployment_from_item(item) for item in self._query(query)]

    def active(self, env: str) -> Deployment | None:
        """``env``'s in-progress deployment (the newest, should there be several), or None."""
        return next((d for d in self.list(env) if d.status == "in_progress"), None)

    # -- events -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def event(
        self, deployment_id: str, phase: str, detail: str | None = None, *, token: str | None = None
    ) -> Iterator[EventHandle]:
        """Time a phase: the record's phase is set and the event written as it starts, again as it ends.

        An exception inside the block records the event as ``error`` with the exception's text and
        propagates. Set ``handle.detail`` inside the block to record what the phase found. Each write
        is conditional on the record's lock ``token`` (see :meth:`update`).
        """
        started = _now()
        key = f"{_iso(started)}#{secrets.token_hex(2)}"
        handle = EventHandle(deployment_id, key, phase, detail)
        item = {
            "pk": _s(_events_pk(deployment_id)),
            "sk": _s(key),
            "phase": _s(phase),
            "started_at": _s(_iso(started)),
            "outcome": _s("running"),
        }
        if detail is not None:
            item["detail"] = _s(detail)
        fence = _token_condition(token, attribute="lock_token")
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _key(_RECORDS_PK, deployment_id),
                            "UpdateExpression": "SET phase = :phase, updated_at = :now",
                            **fence,
                            "ConditionExpression": "attribute_exists(pk) AND " + fence["ConditionExpression"],
                            "ExpressionAttributeValues": {
                                **fence.get("ExpressionAttributeValues", {}),
                                ":phase": _s(phase),
                                ":now": _s(_iso(started)),
                            },
                        }
                    },
                    {"Put": {"TableName": self.table, "Item": item}},
                ],
            )
        except ConditionalWriteFailed:
            raise self._refused(deployment_id, token, f"record the {phase!r} event") from None
        outcome: EventOutcome = "ok"
        try:
            yield handle
        except BaseException as exc:
            outcome = "error"
            handle.detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise
        finally:
            ended = {"ended_at": _s(_iso(_now())), "outcome": _s(outcome)}
            if handle.detail is not None:
                ended["detail"] = _s(handle.detail)
            try:
                self._fenced_set(deployment_id, token, _events_pk(deployment_id), key, ended)
            except DeploymentLockLostError:
                if outcome == "ok":
                    raise
                # An error already propagates (often this very loss); the event stays "running".

    def events(self, deployment_id: str) -> builtins.list[Event]:
        """The deployment's events in the order they started."""
        query = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(_events_pk(deployment_id))},
            "ConsistentRead": True,
        }
        return [_event_from_item(deployment_id, item) for item in self._query(query)]

    # -- tables for plots -------------------------------------------------------------------

    def to_dataframe(self, env: str | None = None) -> pd.DataFrame:
        """Deployments as a table (newest first), one row each, for plots and DORA-style metrics."""
        columns = [
            "id", "env", "version", "from_version", "from_color", "to_color", "strategy", "status",
            "phase", "step_index", "weight", "reason", "who", "started_at", "ended_at", "duration_s",
        ]  # fmt: skip
        import pandas as pd

        rows = [
            {
                **{c: getattr(d, c) for c in columns if c not in ("strategy", "duration_s")},
                "strategy": d.strategy.name,
                "duration_s": d.duration_s,
            }
            for d in self.list(env)
        ]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def events_dataframe(self, deployment_id: str) -> pd.DataFrame:
        """A deployment's events as a table, for a timeline plot."""
        columns = ["phase", "started_at", "ended_at", "duration_s", "outcome", "detail"]
        import pandas as pd

        rows = [
            {"duration_s": e.duration_s, **{c: getattr(e, c) for c in columns if c != "duration_s"}}
            for e in self.events(deployment_id)
        ]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # -- plumbing ---------------------------------------------------------------------------

    def _update_in_progress(
        self, deployment_id: str, changes: dict[str, dict[str, str]], token: str | None
    ) -> Deployment:
        try:
            attributes = self._set(_RECORDS_PK, deployment_id, changes, only_in_progress=True, token=token)
        except ConditionalWriteFailed:
            raise self._refused(deployment_id, token, "change it") from None
        return _deployment_from_item(attributes)

    def _refused(self, deployment_id: str, token: str | None, action: str) -> LedgerError:
        """Why a write to ``deployment_id``'s record failed its condition."""
        try:
            current = self.get(deployment_id)
        except LedgerError:
            return LedgerError(
                f"No deployment {deployment_id!r} to {action} for.",
                hint="Record the deployment with Ledger.start() first.",
            )
        if current.lock_token != token:
            return self._lost(current.env, current.who if token is None else "this controller")
        return LedgerError(
            f"Deployment {deployment_id} is already {current.status} ({current.reason}); "
            "a finished deployment is not changed.",
            hint="Start a new deployment to change the environment again.",
        )

    def _fenced_set(
        self, deployment_id: str, token: str | None, pk: str, sk: str, changes: dict[str, dict[str, str]]
    ) -> None:
        """Set ``changes`` on the item ``pk``/``sk`` while ``deployment_id``'s record has ``token``."""
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values())}
        fence = _token_condition(token, attribute="lock_token")
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": _key(_RECORDS_PK, deployment_id),
                            **fence,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _key(pk, sk),
                            "UpdateExpression": "SET "
                            + ", ".join(f"#a{i} = :v{i}" for i in range(len(changes))),
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                ],
            )
        except ConditionalWriteFailed:
            raise self._refused(deployment_id, token, "record the event's end") from None

    def _set(
        self,
        pk: str,
        sk: str,
        changes: dict[str, dict[str, str]],
        *,
        only_in_progress: bool = False,
        token: str | None = None,
    ) -> dict[str, Any]:
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values())}
        condition = "attribute_exists(pk)"
        if only_in_progress:
            names["#status"] = "status"
            values[":in_progress"] = _s("in_progress")
            condition += " AND #status = :in_progress"
            fence = _token_condition(token, attribute="lock_token")
            condition += " AND " + fence["ConditionExpression"]
            names.update(fence.get("ExpressionAttributeNames", {}))
            values.update(fence.get("ExpressionAttributeValues", {}))
        response = self._call(
            "update_item",
            TableName=self.table,
            Key=_key(pk, sk),
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return cast(dict[str, Any], response["Attributes"])

    def _get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table, Key=_key(pk, sk), ConsistentRead=True)
        return cast(dict[str, Any] | None, response.get("Item"))

    def _query(self, query: dict[str, Any]) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = []
        while True:
            response = self._call("query", **query)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            query = {**query, "ExclusiveStartKey": response["LastEvaluatedKey"]}

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], getattr(self._client, operation)(**kwargs))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionalWriteFailed(f"{operation}: the condition did not hold.") from exc
            if code == "TransactionCanceledException" and "ConditionalCheckFailed" in str(exc):
                raise ConditionalWriteFailed(f"{operation}: the condition did not hold.") from exc
            if code == "ResourceNotFoundException":
                raise LedgerError(
                    f"The ledger table {self.table!r} does not exist on the {self.target.name} target.",
                    hint="Apply the Terraform `global` environment (it creates the table and outputs its "
                    "name), or create one with labkit.deploy.ledger.ensure_table(target, name).",
                ) from exc
            raise LedgerError(
                f"DynamoDB {operation} on the ledger table {self.table!r} failed: {exc}",
                hint="Check that the target is reachable (`labkit doctor`) and its credentials may use "
                "the table.",
            ) from exc
        except BotoCoreError as exc:
            raise LedgerError(
                f"Could not reach DynamoDB for the ledger table {self.table!r}: {exc}",
                hint="Check that the target is up (`labkit doctor`; for the sandbox `labkit sandbox up`).",
            ) from exc


def refuse_while_deploying(target: Target, table: str, env: str, action: str) -> None:
    """Raise :class:`~labkit.errors.DeploymentLockedError` naming who and since when if a deployment
    holds ``env``, so that ``labkit stack apply|destroy`` never changes an environment under a running
    deploy (the controller applies under its own lock and does not ask). No ledger table yet (global
    not applied) means no deployment can hold it."""
    try:
        holder = Ledger(target, table).lock_holder(env)
    except LedgerError:
        return
    if holder is not None:
        raise DeploymentLockedError(
            f"Refusing to {action} {env}: a deployment holds it, {holder.describe()}.",
            hint=f"Wait for it to finish (`labkit deploy status {env}`); if its controller is gone, "
            f"`labkit deploy resume {env}` or `labkit deploy abort {env}` ends it.",
        )


def ensure_table(target: Target, name: str) -> str:
    """Create the ledger table ``name`` (pk/sk strings, on demand) unless it exists; return ``name``.

    On AWS Terraform's ``global`` environment owns the table; this is for tests and the sandbox, and
    on AWS it needs the spending opt-in.
    """
    client: Any = target.client("dynamodb")
    try:
        table = client.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise LedgerError(f"Could not look up the ledger table {name!r}: {exc}") from exc
    else:
        keys = {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]}
        if keys != {("pk", "HASH"), ("sk", "RANGE")}:
            raise LedgerError(
                f"The table {name!r} exists but its keys are {sorted(keys)}, not pk (HASH) and sk (RANGE).",
                hint="Give the ledger a table of its own.",
            )
        return name
    target.require_spend(f"create the DynamoDB table {name!r}")
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return name


def _locked_error(holder: LockHolder) -> DeploymentLockedError:
    return DeploymentLockedError(
        f"Environment {holder.env!r} is locked by {holder.describe()}.",
        hint=f"Wait for that deployment to finish (`labkit deploy status {holder.env}`). If its controller "
        f"is gone, `labkit deploy abort {holder.env}` rolls it back and clears the lock; "
        f"`labkit ledger {holder.env} --force-unlock` clears only the lock.",
    )


def _new_holder(env: str, owner: str, deployment_id: str, ttl_s: float) -> LockHolder:
    now = _now()
    return LockHolder(
        env=env,
        owner=owner,
        deployment_id=deployment_id,
        acquired_at=now,
        token=secrets.token_hex(16),
        heartbeat_at=now,
        ttl_s=ttl_s,
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
    )


def _lock_item(holder: LockHolder) -> dict[str, Any]:
    item = {
        "pk": _s(_lock_pk(holder.env)),
        "sk": _s(_LOCK_SK),
        "env": _s(holder.env),
        "owner": _s(holder.owner),
        "deployment_id": _s(holder.deployment_id),
        "acquired_at": _s(_iso(holder.acquired_at)),
        "token": _s(holder.token),
        "heartbeat_at": _s(_iso(holder.heartbeat_at or holder.acquired_at)),
        "ttl_s": {"N": repr(float(holder.ttl_s))},
        "host": _s(holder.host),
    }
    if holder.pid is not None:
        item["pid"] = _n(holder.pid)
    if holder.pid_start is not None:
        item["pid_start"] = _s(holder.pid_start)
    return item


def _token_condition(token: str | None, *, attribute: str = "token") -> dict[str, Any]:
    """A condition that ``attribute`` is ``token`` (absent when ``token`` is None)."""
    if token is None:
        return {
            "ConditionExpression": "attribute_not_exists(#tok)",
            "ExpressionAttributeNames": {"#tok": attribute},
        }
    return {
        "ConditionExpression": "#tok = :tok",
        "ExpressionAttributeNames": {"#tok": attribute},
        "ExpressionAttributeValues": {":tok": _s(token)},
    }


def _lock_pk(env: str) -> str:
    return f"LOCK#{env}"


def _events_pk(deployment_id: str) -> str:
    return f"EVENTS#{deployment_id}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(pk), "sk": _s(sk)}


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else cast(str, value["S"])


def _time(item: dict[str, Any], name: str) -> datetime | None:
    text = _text(item, name)
    return None if text is None else datetime.fromisoformat(text)


def _lock_from_item(item: dict[str, Any]) -> LockHolder:
    return LockHolder(
        env=item["env"]["S"],
        owner=item["owner"]["S"],
        deployment_id=item["deployment_id"]["S"],
        acquired_at=datetime.fromisoformat(item["acquired_at"]["S"]),
        token=_text(item, "token") or "",
        heartbeat_at=_time(item, "heartbeat_at"),
        ttl_s=float(item["ttl_s"]["N"]) if "ttl_s" in item else LOCK_TTL_S,
        host=_text(item, "host") or "",
        pid=int(item["pid"]["N"]) if "pid" in item else None,
        pid_start=_text(item, "pid_start"),
    )


def _deployment_from_item(item: dict[str, Any]) -> Deployment:
    return Deployment(
        id=item["id"]["S"],
        env=item["env"]["S"],
        version=item["version"]["S"],
        from_version=_text(item, "from_version"),
        from_color=item["from_color"]["S"],
        to_color=item["to_color"]["S"],
        strategy=from_dict(json.loads(item["strategy"]["S"])),
        status=cast(DeploymentStatus, item["status"]["S"]),
        phase=item["phase"]["S"],
        step_index=int(item["step_index"]["N"]),
        weight=int(item["weight"]["N"]),
        reason=_text(item, "reason"),
        who=item["who"]["S"],
        started_at=datetime.fromisoformat(item["started_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        ended_at=_time(item, "ended_at"),
        lock_token=_text(item, "lock_token"),
        terraform_lock=json.loads(item["terraform_lock"]["S"]) if "terraform_lock" in item else None,
    )


def _event_from_item(deployment_id: str, item: dict[str, Any]) -> Event:
    return Event(
        deployment_id=deployment_id,
        key=item["sk"]["S"],
        phase=item["phase"]["S"],
        started_at=datetime.fromisoformat(item["started_at"]["S"]),
        ended_at=_time(item, "ended_at"),
        outcome=cast(EventOutcome, item["outcome"]["S"]),
        detail=_text(item, "detail"),
    )


def _duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
