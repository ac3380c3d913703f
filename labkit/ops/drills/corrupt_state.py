"""Drill ``corrupt-state``: the environment's state object in S3 broken through the S3 API, as a
person or a broken tool would: overwritten with garbage bytes, cut short (truncated JSON),
replaced by a valid state of another lineage, or deleted (a delete marker). ``restore-state``
recovers it from the bucket's versions."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import DrillError
from labkit.infra.stack import Stack
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Target

VARIANTS = ("garbage", "truncated", "other-lineage", "deleted")


def inject(target: Target, environment: str, *, variant: str = "garbage") -> dict[str, Any]:
    """Break ``environment``'s state object as ``variant`` says; the state as it was, and what was done."""
    if variant not in VARIANTS:
        raise DrillError(
            f"corrupt-state has no variant {variant!r}.", hint=f"Use one of: {', '.join(VARIANTS)}."
        )
    config = Stack(environment, target).backend_config(locking=False)
    bucket, key = config["bucket"], config["key"]
    s3 = target.client("s3")
    try:
        current = s3.get_object(Bucket=bucket, Key=key)
        body: bytes = current["Body"].read()
        state = json.loads(body)
        lineage, serial = str(state["lineage"]), int(state["serial"])
    except (ClientError, ValueError, KeyError, TypeError) as exc:
        raise DrillError(
            f"s3://{bucket}/{key} is not a readable state to break ({type(exc).__name__}).",
            hint=f"Recover it first: `labkit runbook run restore-state -p environment {environment}`.",
        ) from exc
    facts: dict[str, Any] = {
        "variant": variant,
        "bucket": bucket,
        "key": key,
        "lineage": lineage,
        "serial": serial,
        "version_id": current.get("VersionId"),
    }
    if variant == "deleted":
        deleted = s3.delete_object(Bucket=bucket, Key=key)
        return {**facts, "delete_marker": deleted.get("VersionId")}
    if variant == "garbage":
        new = os.urandom(4096)
    elif variant == "truncated":
        new = body[: len(body) // 2]
    else:  # another stack's state pushed over this one: valid, fresh lineage, nothing in it
        other = {**state, "lineage": str(uuid.uuid4()), "serial": serial + 3, "resources": [], "outputs": {}}
        new = json.dumps(other, indent=2).encode()
        facts["other_lineage"] = other["lineage"]
    written = s3.put_object(Bucket=bucket, Key=key, Body=new)
    return {**facts, "injected_version": written.get("VersionId"), "injected_bytes": len(new)}


def state_is_last_good(target: Target, environment: str) -> Check:
    """The state object parses with the lineage of the newest good versions and the highest serial
    of that lineage in the bucket: no state version lost. Read with the S3 API alone."""
    config = Stack(environment, target).backend_config(locking=False)
    bucket, key = config["bucket"], config["key"]
    s3 = target.client("s3")
    try:
        now = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        lineage, serial = str(now["lineage"]), int(now["serial"])
    except (ClientError, ValueError, KeyError, TypeError) as exc:
        return False, f"the state object does not read as a state ({type(exc).__name__})"
    serials: dict[str, list[int]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for version in page.get("Versions", []):
            if version["Key"] != key:
                continue
            try:
                doc = json.loads(
                    s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
                )
                serials.setdefault(str(doc["lineage"]), []).append(int(doc["serial"]))
            except (ValueError, KeyError, TypeError):
                continue
    best = max(serials, key=lambda name: len(serials[name]))
    highest = max(serials[best])
    if lineage != best or serial != highest:
        return (
            False,
            f"lineage {lineage} serial {serial}; the history's lineage {best} reached serial {highest}",
        )
    return True, f"lineage {lineage}, serial {serial}: the last good one"


DRILL = Drill(
    name="corrupt-state",
    summary="the state object in S3 overwritten (garbage, truncated, another lineage) or deleted",
    inject=inject,
    runbook="restore-state",
    checks={"state-is-last-good": state_is_last_good},
)
