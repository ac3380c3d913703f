"""Locks held in the sandbox's AWS state, read from moto's models in the service's own process.

A lock is state like any other, so a restart restores it; a lock whose holder died before the
save comes back with no process behind it. The service lists what it restored, with holder and
age, so the user learns of it before a command fails on it:

- Terraform's S3-native state lock: an object ``<state key>.tflock`` (``use_lockfile``);
- Terraform's DynamoDB state lock: an item whose ``LockID`` is ``<bucket>/<key>`` with an ``Info``
  attribute (the ``<bucket>/<key>-md5`` digest items are not locks);
- the deployment ledger's lock: an item ``pk="LOCK#<env>"``, ``sk="LOCK"`` (see labkit.deploy.ledger).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LockKind = Literal["terraform-s3", "terraform-dynamodb", "deployment"]


@dataclass(frozen=True)
class HeldLock:
    kind: LockKind
    #: Where it lives: ``s3://bucket/key.tflock``, ``dynamodb://table/LockID`` or the ledger's env.
    where: str
    holder: str
    created: str | None
    lock_id: str | None = None

    def age_s(self, now: datetime | None = None) -> float | None:
        if not self.created:
            return None
        try:
            created = datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            return None
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return ((now or datetime.now(UTC)) - created).total_seconds()

    def summary(self, now: datetime | None = None) -> str:
        age = self.age_s(now)
        since = f"since {self.created} ({_age_text(age)} ago)" if age is not None else "since an unknown time"
        what = {"terraform-s3": "Terraform state lock", "terraform-dynamodb": "Terraform state lock",
                "deployment": "deployment lock"}[self.kind]  # fmt: skip
        ident = f", ID {self.lock_id}" if self.lock_id else ""
        return f"{what} {self.where} held by {self.holder} {since}{ident}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "holder": self.holder, "created": self.created,
                "lock_id": self.lock_id, "age_s": self.age_s(), "summary": self.summary()}  # fmt: skip


def _age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def find_locks() -> list[HeldLock]:
    """Every lock in this process's moto backends (call under the service's model lock)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends

    found: list[HeldLock] = []
    for s3_account in s3_backends.values():
        for s3 in s3_account.values():
            found += _s3_locks(s3)
    for dynamodb_account in dynamodb_backends.values():
        for dynamodb in dynamodb_account.values():
            for table in dynamodb.tables.values():
                found += _dynamodb_locks(table)
    return found


def _s3_locks(backend: Any) -> list[HeldLock]:
    found = []
    for bucket in backend.buckets.values():
        for key, current in bucket.keys.items():  # the newest version of each key
            if not key.endswith(".tflock") or not hasattr(current, "value"):  # a delete marker
                continue
            info = _json(current.value)
            found.append(
                HeldLock(
                    kind="terraform-s3",
                    where=f"s3://{bucket.name}/{key}",
                    holder=str(info.get("Who") or "unknown"),
                    created=info.get("Created"),
                    lock_id=info.get("ID"),
                )
            )
    return found


def _dynamodb_locks(table: Any) -> list[HeldLock]:
    found = []
    for item in table.all_items():
        attrs = {name: value.value for name, value in item.attrs.items() if value.type == "S"}
        if "LockID" in attrs and "Info" in attrs:
            info = _json(attrs["Info"].encode())
            found.append(
                HeldLock(
                    kind="terraform-dynamodb",
                    where=f"dynamodb://{table.name}/{attrs['LockID']}",
                    holder=str(info.get("Who") or "unknown"),
                    created=info.get("Created"),
                    lock_id=info.get("ID"),
                )
            )
        elif attrs.get("sk") == "LOCK" and str(attrs.get("pk", "")).startswith("LOCK#"):
            found.append(
                HeldLock(
                    kind="deployment",
                    where=f"ledger {table.name}, environment {attrs['pk'].removeprefix('LOCK#')}",
                    holder=f"{attrs.get('owner', 'unknown')} (deployment {attrs.get('deployment_id', '?')})",
                    created=attrs.get("acquired_at"),
                )
            )
    return found


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
