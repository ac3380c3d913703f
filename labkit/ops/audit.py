"""The audit record of every runbook run, in the deployment ledger's DynamoDB table.

Items ``pk="RUNBOOK"``, ``sk=<run id>`` beside the ledger's deployments (see
:mod:`labkit.deploy.ledger`). A run id starts with a UTC timestamp, so one query lists the runs
newest first. The record is written when the runbook opens and again after every step, so a run
killed halfway still says who ran what, where, and how far it got.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from botocore.exceptions import BotoCoreError, ClientError

from labkit.errors import RunbookError
from labkit.target import Target

Outcome = Literal["running", "recovered", "nothing-to-do", "planned", "refused", "failed"]
StepOutcome = Literal["ok", "error", "would", "skipped", "failed"]
Section = Literal["diagnose", "plan", "act", "verify"]

_PK = "RUNBOOK"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id(runbook: str) -> str:
    """``<UTC timestamp>-<runbook>-<nonce>``: unique, and sorts by start time."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{runbook}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class StepRecord:
    """One step of a run: its section, what it did, how it ended and how long it took."""

    section: Section
    name: str
    outcome: StepOutcome
    started_at: str
    duration_s: float
    detail: str = ""


@dataclass
class RunRecord:
    """Who ran which runbook, where, with what, and every step's outcome."""

    run_id: str
    runbook: str
    environment: str
    target: str
    region: str
    who: str
    parameters: dict[str, Any]
    dry_run: bool
    started_at: str
    outcome: Outcome = "running"
    finished_at: str | None = None
    #: When the Plan step named a fix: the moment the runbook knew what was wrong.
    detected_at: str | None = None
    summary: str = ""
    executed_copy: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Whether the run ended with the environment proven fine by its Verify checks."""
        return self.outcome in ("recovered", "nothing-to-do")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    """Runbook run records in the ledger table ``table`` of ``target``."""

    def __init__(self, target: Target, table: str) -> None:
        self.target = target
        self.table = table
        self._client: Any = target.client("dynamodb")

    def write(self, record: RunRecord) -> None:
        """Put the whole record (it is small: a run has a dozen steps)."""
        body = record.to_json()
        item = {
            "pk": {"S": _PK},
            "sk": {"S": record.run_id},
            "environment": {"S": record.environment},
            "record": {"S": json.dumps(body, default=str)},
        }
        self._call("put_item", TableName=self.table, Item=item)

    def get(self, run_id: str) -> RunRecord:
        response = self._call(
            "get_item", TableName=self.table, Key={"pk": {"S": _PK}, "sk": {"S": run_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            raise RunbookError(
                f"No runbook run {run_id!r} in the ledger table {self.table!r}.",
                hint="`labkit ledger --runbooks` lists the runs; the runbook may have failed before its "
                "guard cell opened the run.",
            )
        return _record(item)

    def list(self, environment: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first; only ``environment``'s when given."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _PK}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        if environment is not None:
            query["FilterExpression"] = "environment = :env"
            query["ExpressionAttributeValues"][":env"] = {"S": environment}
        records: list[RunRecord] = []
        while True:
            response = self._call("query", **query)
            records.extend(_record(item) for item in response.get("Items", []))
            if limit is not None and len(records) >= limit:
                return records[:limit]
            if "LastEvaluatedKey" not in response:
                return records
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], getattr(self._client, operation)(**kwargs))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise RunbookError(
                    f"The ledger table {self.table!r} does not exist on {self.target.name}, so runbook "
                    "runs cannot be recorded.",
                    hint="Apply the global environment first: `labkit stack apply global`.",
                ) from exc
            raise RunbookError(
                f"The runbook audit record could not be written to {self.table!r}: {exc}",
                hint="Check the target's credentials and that the ledger table exists (`labkit stack "
                "output global`).",
            ) from exc
        except BotoCoreError as exc:
            raise RunbookError(
                f"The ledger table {self.table!r} on {self.target.name} cannot be reached: {exc}",
                hint="On the sandbox: `labkit sandbox status`; on AWS: check the network and region.",
            ) from exc


def _record(item: dict[str, Any]) -> RunRecord:
    body = json.loads(item["record"]["S"])
    steps = [StepRecord(**step) for step in body.pop("steps", [])]
    return RunRecord(**body, steps=steps)
