"""The ``restore-state`` runbook's logic: an environment's state object in the versioned S3 backend.

The state bucket keeps every version of ``<env>/terraform.tfstate`` (versioning is on), so a state
overwritten with garbage, cut short, replaced by another stack's state or deleted is still there,
one version down. This module reads the versions through the S3 API, never through Terraform
(which cannot read a broken state):

- :func:`list_versions`: every version and delete marker, newest first, each parsed
  (:func:`parse_state`): is it a Terraform state, which lineage, which serial;
- :func:`diagnose` (pure) / :func:`inspect`: what is wrong with the current object, which lineage
  is the right one (:func:`expected_lineage`) and which version to bring back
  (:func:`choose_version`);
- :func:`restore`: bring it back as the newest object (a server-side copy of that version, or
  the removal of the delete marker above it), then :func:`fix_lock_digest`.

A healthy state diagnoses as ``ok`` and :func:`actions` plans nothing, so a second run changes
nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from botocore.exceptions import ClientError

from labkit.errors import StateRecoveryError
from labkit.infra.stack import Stack
from labkit.ops.runbook import Action

#: What a version holds: a Terraform state, or why it is not one.
Kind = Literal["state", "delete-marker", "empty", "garbage", "truncated", "not-state"]
#: What is wrong with the current object (``ok``: nothing).
Problem = Literal[
    "ok", "missing", "deleted", "empty", "garbage", "truncated", "not-state", "other-lineage", "behind"
]
#: How many of the newest good versions vote on the expected lineage.
LINEAGE_WINDOW = 5


@dataclass(frozen=True)
class Parsed:
    """What :func:`parse_state` read from one object body."""

    kind: Kind
    lineage: str | None = None
    serial: int | None = None
    terraform_version: str | None = None
    detail: str = ""


def parse_state(body: bytes) -> Parsed:
    """Whether ``body`` is a Terraform state (version 4 JSON with lineage and serial), and if not, why.

    ``truncated`` is JSON that starts as a state and stops short (an interrupted write, a full
    disk); ``garbage`` is anything that is not JSON at all; ``not-state`` is JSON of another shape.
    """
    if not body.strip():
        return Parsed("empty", detail="0 bytes" if not body else "only whitespace")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Parsed("garbage", detail=f"not UTF-8 text (byte {exc.start})")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # A state written by Terraform starts with '{' and names its version on the next line; one
        # that stops short of its end fails at the end of the text, or inside a string left open.
        starts_like_state = text.lstrip().startswith("{") and '"version"' in text[:200]
        at_end = exc.pos >= len(text.rstrip()) - 64 or exc.msg.startswith("Unterminated string")
        if starts_like_state and at_end:
            return Parsed("truncated", detail=f"JSON ends early ({len(body)} bytes): {exc.msg}")
        return Parsed("garbage", detail=f"not JSON: {exc.msg} at byte {exc.pos}")
    if not isinstance(doc, dict):
        return Parsed("not-state", detail=f"JSON {type(doc).__name__}, not an object")
    lineage, serial, version = doc.get("lineage"), doc.get("serial"), doc.get("version")
    if not isinstance(lineage, str) or not lineage or not isinstance(serial, int) or version != 4:
        return Parsed("not-state", detail="JSON without a state's version 4, lineage and serial")
    tf_version = doc.get("terraform_version")
    return Parsed(
        "state",
        lineage=lineage,
        serial=serial,
        terraform_version=str(tf_version) if tf_version else None,
        detail=f"{len(doc.get('resources') or [])} resources",
    )


@dataclass(frozen=True)
class StateVersion:
    """One version (or delete marker) of the state object, parsed."""

    version_id: str
    last_modified: datetime
    is_latest: bool
    size: int
    parsed: Parsed

    @property
    def kind(self) -> Kind:
        return self.parsed.kind

    @property
    def lineage(self) -> str | None:
        return self.parsed.lineage

    @property
    def serial(self) -> int | None:
        return self.parsed.serial

    @property
    def is_state(self) -> bool:
        return self.parsed.kind == "state"

    def describe(self) -> str:
        when = f"{self.last_modified:%Y-%m-%d %H:%M:%S}"
        if self.is_state:
            return f"version {self.version_id} ({when}): serial {self.serial}, lineage {self.lineage}"
        return f"version {self.version_id} ({when}): {self.kind}" + (
            f", {self.parsed.detail}" if self.parsed.detail else ""
        )


def expected_lineage(versions: Sequence[StateVersion], *, window: int = LINEAGE_WINDOW) -> str | None:
    """The lineage most of the ``window`` newest parsing versions share (None when none parses).

    One foreign state written on top of a stack's history is outvoted by the versions before it.
    A tie cannot be settled from the history alone, so it raises and asks for the lineage.
    """
    recent = [v.lineage for v in versions if v.is_state and v.lineage][:window]
    if not recent:
        return None
    ranked = Counter(recent).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = ", ".join(lineage for lineage, count in ranked if count == ranked[0][1])
        raise StateRecoveryError(
            f"The newest state versions are split between lineages ({tied}), so which one is this "
            "environment's cannot be told from the history.",
            hint="Check which lineage the environment's resources belong to (an older `terraform state "
            "pull`, a plan's output) and pass it: -p lineage LINEAGE.",
        )
    return ranked[0][0]


def choose_version(versions: Sequence[StateVersion], lineage: str) -> StateVersion | None:
    """The version to restore: of ``lineage``, parsing, with the highest serial, the newest of those."""
    good = [v for v in versions if v.is_state and v.lineage == lineage]
    if not good:
        return None
    return max(good, key=lambda v: (v.serial or 0, v.last_modified))


@dataclass(frozen=True)
class StateDiagnosis:
    """What :func:`diagnose` found: the problem, the lineage, and the version to restore."""

    bucket: str
    key: str
    problem: Problem
    current: StateVersion | None  # the newest version or delete marker; None: no object at all
    lineage: str | None
    chosen: StateVersion | None  # what restoring brings back (None when nothing to do or nothing good)
    versions: tuple[StateVersion, ...]

    @property
    def ok(self) -> bool:
        return self.problem == "ok"

    @property
    def last_good_serial(self) -> int | None:
        """The highest serial of the expected lineage: what a recovery must end with."""
        return self.chosen.serial if self.chosen else self.current.serial if self.current else None

    def __str__(self) -> str:
        where = f"s3://{self.bucket}/{self.key}"
        states = sum(1 for v in self.versions if v.is_state)
        head = f"{where}: {len(self.versions)} version(s), {states} parse as state"
        current = self.current.describe() if self.current else "no object"
        text = {
            "ok": f"fine: the current object is {current}",
            "missing": "there is no object and no version to restore",
            "deleted": f"deleted: the current object is a delete marker ({current})",
            "empty": f"empty: {current}",
            "garbage": f"unparsable: {current}",
            "truncated": f"truncated: {current}",
            "not-state": f"not a Terraform state: {current}",
            "other-lineage": f"another lineage: {current}; this environment's is {self.lineage}",
            "behind": f"behind: {current}, while serial {self.last_good_serial} of the lineage exists",
        }[self.problem]
        restore = f"\n  restore: {self.chosen.describe()}" if self.chosen and not self.ok else ""
        return f"{head}\n  {text}{restore}"


def diagnose(
    versions: Sequence[StateVersion], *, bucket: str = "", key: str = "", lineage: str | None = None
) -> StateDiagnosis:
    """What is wrong with the newest of ``versions`` (newest first) and which version fixes it.

    ``lineage`` overrides the inferred one (:func:`expected_lineage`). Raises
    :class:`StateRecoveryError` when the object is broken and no version of the lineage is left.
    """
    ordered = tuple(versions)
    current = ordered[0] if ordered else None
    wanted = lineage or expected_lineage(ordered)
    best = choose_version(ordered, wanted) if wanted else None

    problem: Problem
    if current is None:
        problem = "missing"
    elif current.kind == "delete-marker":
        problem = "deleted"
    elif not current.is_state:
        problem = cast(Problem, current.kind)  # empty, garbage, truncated or not-state
    elif current.lineage != wanted:
        problem = "other-lineage"
    elif best is not None and (current.serial or 0) < (best.serial or 0):
        problem = "behind"
    else:
        problem = "ok"
    if problem != "ok" and best is None:
        raise StateRecoveryError(
            f"s3://{bucket}/{key} is broken ({problem}) and no version of it parses as a Terraform state"
            + (f" of lineage {wanted}" if wanted else "")
            + ": there is nothing to restore.",
            hint="Rebuild the state from the resources (the restore-environment runbook, or "
            "`terraform import`), or pass -p lineage LINEAGE if the lineage guessed is wrong.",
        )
    return StateDiagnosis(
        bucket=bucket,
        key=key,
        problem=problem,
        current=current,
        lineage=wanted,
        chosen=None if problem == "ok" else best,
        versions=ordered,
    )


# -- reading and writing the bucket -------------------------------------------------------------


def list_versions(stack: Stack) -> list[StateVersion]:
    """Every version and delete marker of ``stack``'s state object, newest first, parsed."""
    config = stack.backend_config(locking=False)
    bucket, key = config["bucket"], config["key"]
    s3 = stack.target.client("s3")
    entries: list[tuple[dict[str, Any], bool]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        entries += [(v, False) for v in page.get("Versions", []) if v["Key"] == key]
        entries += [(m, True) for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    # Newest first; S3 lists one key's versions in that order, and a marker sorts in by its date.
    # (A stable sort: versions written within one second keep S3's order.)
    entries.sort(key=lambda e: (e[0]["LastModified"], bool(e[0].get("IsLatest"))), reverse=True)
    versions = []
    for entry, marker in entries:
        if marker:
            parsed = Parsed("delete-marker")
        else:
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])["Body"].read()
            parsed = parse_state(body)
        versions.append(
            StateVersion(
                version_id=str(entry["VersionId"]),
                last_modified=entry["LastModified"],
                is_latest=bool(entry.get("IsLatest")),
                size=int(entry.get("Size", 0)),
                parsed=parsed,
            )
        )
    return versions


def inspect(stack: Stack, *, lineage: str | None = None) -> StateDiagnosis:
    """Read ``stack``'s state object and its versions, and diagnose them (only reads)."""
    config = stack.backend_config(locking=False)
    return diagnose(list_versions(stack), bucket=config["bucket"], key=config["key"], lineage=lineage or None)


def state_identity(stack: Stack) -> tuple[str, int, str] | None:
    """(lineage, serial, version id) of the current object, or None when it does not parse."""
    versions = list_versions(stack)
    if not versions or not versions[0].is_state:
        return None
    v = versions[0]
    return str(v.lineage), int(v.serial or 0), v.version_id


def actions(stack: Stack, finding: StateDiagnosis) -> list[Action]:
    """What the runbook's Plan section lists for ``finding``: nothing when the state is fine."""
    if finding.ok or finding.chosen is None:
        return []
    chosen = finding.chosen
    how = (
        "remove the delete marker above it"
        if finding.problem == "deleted" and _marker_above_only(finding)
        else "copy it back as the newest object"
    )
    return [
        Action(f"Restore {chosen.describe()}: {how}", lambda: restore(stack, finding)),
        Action("Make the lock table's digest match the restored state", lambda: fix_lock_digest(stack)),
    ]


def restore(stack: Stack, finding: StateDiagnosis) -> str:
    """Make ``finding.chosen`` the newest version of the state object; what was done.

    Refuses while a run holds the state lock (it would write over the restore) or when the object
    changed since the diagnosis. A delete marker straight above the chosen version is removed (the
    version becomes current again, as it was); anything else is a server-side copy of the version,
    so the broken versions stay in the history for a post-mortem.
    """
    chosen = finding.chosen
    if chosen is None:
        return "nothing to restore"
    holder = stack.state_lock()
    if holder is not None:
        raise StateRecoveryError(
            f"{stack.env}'s state is locked by {holder.get('Who')} ({holder.get('Operation')}, lock "
            f"{holder.get('ID')}): a run may write the state while it is restored.",
            hint="Let that run finish; if it died, run the unlock-state runbook first, then this again.",
        )
    latest = list_versions(stack)
    if finding.current is None or not latest or latest[0].version_id != finding.current.version_id:
        raise StateRecoveryError(
            f"s3://{finding.bucket}/{finding.key} changed since it was diagnosed.",
            hint="Run the runbook again: it diagnoses the object as it is now.",
        )
    s3 = stack.target.client("s3")
    if finding.problem == "deleted" and _marker_above_only(finding):
        for marker in _markers_above(finding):
            s3.delete_object(Bucket=finding.bucket, Key=finding.key, VersionId=marker.version_id)
        return f"removed the delete marker; {chosen.describe()} is current again"
    copied = s3.copy_object(
        Bucket=finding.bucket,
        Key=finding.key,
        CopySource={"Bucket": finding.bucket, "Key": finding.key, "VersionId": chosen.version_id},
    )
    return f"copied {chosen.describe()} back as version {copied.get('VersionId')}"


def _markers_above(finding: StateDiagnosis) -> list[StateVersion]:
    """The delete markers above the chosen version, newest first."""
    above = []
    for version in finding.versions:
        if finding.chosen is not None and version.version_id == finding.chosen.version_id:
            break
        above.append(version)
    return above


def _marker_above_only(finding: StateDiagnosis) -> bool:
    """Whether only delete markers lie between the current object and the chosen version."""
    above = _markers_above(finding)
    return bool(above) and all(v.kind == "delete-marker" for v in above)


def fix_lock_digest(stack: Stack) -> str:
    """Set the DynamoDB lock table's digest of the state to the object's MD5, as Terraform does.

    Terraform before 1.10 locks in DynamoDB and keeps there the MD5 of the state it last wrote
    (item ``<bucket>/<key>-md5``); a restored state with another digest makes every later command
    fail with "state data in S3 does not have the expected content". From 1.10 the backend locks
    with a lock file (``use_lockfile``) and keeps no digest: then there is nothing to fix.
    """
    config = stack.backend_config()
    table = config.get("dynamodb_table")
    if not table:
        return "the backend locks with a lock file in S3 (use_lockfile, Terraform 1.10+): no digest to fix"
    body = stack.target.client("s3").get_object(Bucket=config["bucket"], Key=config["key"])["Body"].read()
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    stack.target.client("dynamodb").put_item(
        TableName=table,
        Item={"LockID": {"S": f"{config['bucket']}/{config['key']}-md5"}, "Digest": {"S": digest}},
    )
    return f"set the digest in {table} to {digest}"


def verify_restored(stack: Stack, finding: StateDiagnosis) -> tuple[bool, str]:
    """The current object parses, has the expected lineage and the last good serial."""
    try:
        now = state_identity(stack)
    except ClientError as exc:
        return False, f"cannot read the state object: {exc}"
    if now is None:
        return False, "the current object does not parse as a Terraform state"
    lineage, serial, version = now
    wanted = finding.last_good_serial
    ok = lineage == finding.lineage and (wanted is None or serial == wanted)
    return ok, f"version {version}: lineage {lineage}, serial {serial} (expected {finding.lineage}, {wanted})"
