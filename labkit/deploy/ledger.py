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
import getpass
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from labkit.deploy.strategy import Strategy, from_dict
from labkit.errors import ConditionalWriteFailed, DeploymentLockedError, LedgerError
from labkit.target import Target

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
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True)
class LockHolder:
    """Who holds an environment's deployment lock, for which deployment, and since when."""

    env: str
    owner: str
    deployment_id: str
    acquired_at: datetime

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

    def acquire_lock(self, env: str, owner: str, deployment_id: str) -> LockHolder:
        """Take ``env``'s deployment lock, or raise :class:`DeploymentLockedError` naming the holder."""
        for _attempt in range(3):
            holder = LockHolder(env=env, owner=owner, deployment_id=deployment_id, acquired_at=_now())
            try:
                self._call(
                    "put_item",
                    TableName=self.table,
                    Item={
                        "pk": _s(_lock_pk(env)),
                        "sk": _s(_LOCK_SK),
                        "env": _s(env),
                        "owner": _s(owner),
                        "deployment_id": _s(deployment_id),
                        "acquired_at": _s(_iso(holder.acquired_at)),
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return holder
            except ConditionalWriteFailed:
                current = self.lock_holder(env)
                if current is not None:
                    raise _locked_error(current) from None
                # released between our write and our read: try again
        raise LedgerError(
            f"The deployment lock of {env!r} kept changing hands while it was being taken.",
            hint="Another controller is taking and releasing it; try again in a moment.",
        )

    def release_lock(self, env: str, owner: str) -> bool:
        """Release ``env``'s lock if ``owner`` holds it. False when no one held it.

        Raises :class:`DeploymentLockedError` when someone else holds it: only the holder releases.
        """
        try:
            self._call(
                "delete_item",
                TableName=self.table,
                Key=_key(_lock_pk(env), _LOCK_SK),
                ConditionExpression="attribute_exists(pk) AND #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": _s(owner)},
            )
        except ConditionalWriteFailed:
            current = self.lock_holder(env)
            if current is None:
                return False
            raise DeploymentLockedError(
                f"Cannot release the deployment lock of {env!r}: it is held by {current.describe()}, "
                f"not by {owner}.",
                hint=f"Only the holder releases it. If that controller is gone, `labkit deploy abort {env}` "
                f"rolls back and clears it, or `labkit ledger {env} --force-unlock` clears only the lock.",
            ) from None
        return True

    def force_release(self, env: str) -> LockHolder | None:
        """Remove ``env``'s lock whoever holds it (for abort); returns who held it, or None."""
        response = self._call(
            "delete_item", TableName=self.table, Key=_key(_lock_pk(env), _LOCK_SK), ReturnValues="ALL_OLD"
        )
        old = response.get("Attributes")
        return _lock_from_item(old) if old else None

    def lock_holder(self, env: str) -> LockHolder | None:
        """Who holds ``env``'s lock now, or None."""
        item = self._get_item(_lock_pk(env), _LOCK_SK)
        return _lock_from_item(item) if item else None

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
    ) -> Deployment:
        """Record a new ``in_progress`` deployment (take the lock first) and return it."""
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
        try:
            self._call(
                "put_item", TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ConditionalWriteFailed:
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
    ) -> Deployment:
        """Record progress of an in-progress deployment; arguments left as None stay as they are."""
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
        return self._update_in_progress(deployment_id, changes)

    def finish(self, deployment_id: str, status: DeploymentStatus, reason: str) -> Deployment:
        """End a deployment as succeeded, rolled_back or aborted, with the reason people will read."""
        if status not in FINAL_STATUSES:
            raise LedgerError(
                f"{status!r} is not a final status.", hint=f"Finish with one of: {', '.join(FINAL_STATUSES)}."
            )
        now = _iso(_now())
        return self._update_in_progress(
            deployment_id,
            {"status": _s(status), "reason": _s(reason), "ended_at": _s(now), "updated_at": _s(now)},
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
    def event(self, deployment_id: str, phase: str, detail: str | None = None) -> Iterator[EventHandle]:
        """Time a phase: the record's phase is set and the event written as it starts, again as it ends.

        An exception inside the block records the event as ``error`` with the exception's text and
        propagates. Set ``handle.detail`` inside the block to record what the phase found.
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
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(_RECORDS_PK, deployment_id),
                UpdateExpression="SET phase = :phase, updated_at = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":phase": _s(phase), ":now": _s(_iso(started))},
            )
        except ConditionalWriteFailed:
            raise LedgerError(
                f"No deployment {deployment_id!r} to record the {phase!r} event for.",
                hint="Record the deployment with Ledger.start() first.",
            ) from None
        self._call("put_item", TableName=self.table, Item=item)
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
            self._set(_events_pk(deployment_id), key, ended)

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
        rows = [
            {"duration_s": e.duration_s, **{c: getattr(e, c) for c in columns if c != "duration_s"}}
            for e in self.events(deployment_id)
        ]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # -- plumbing ---------------------------------------------------------------------------

    def _update_in_progress(self, deployment_id: str, changes: dict[str, dict[str, str]]) -> Deployment:
        try:
            attributes = self._set(_RECORDS_PK, deployment_id, changes, only_in_progress=True)
        except ConditionalWriteFailed:
            current = self.get(deployment_id)  # raises when there is no such deployment
            raise LedgerError(
                f"Deployment {deployment_id} is already {current.status} ({current.reason}); "
                "a finished deployment is not changed.",
                hint="Start a new deployment to change the environment again.",
            ) from None
        return _deployment_from_item(attributes)

    def _set(
        self,
        pk: str,
        sk: str,
        changes: dict[str, dict[str, str]],
        *,
        only_in_progress: bool = False,
    ) -> dict[str, Any]:
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values())}
        condition = "attribute_exists(pk)"
        if only_in_progress:
            names["#status"] = "status"
            values[":in_progress"] = _s("in_progress")
            condition += " AND #status = :in_progress"
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
