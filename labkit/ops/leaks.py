"""What the ``credential-leak`` runbook calls: an IAM user's access key found where it must not be
(a file, a log, a commit) is deactivated, what it did is listed, the user gets a new key, and the
old one is proven refused.

- **Diagnose** (:func:`inspect`): the key's user, creation date and status (IAM), and the calls
  made with it since its creation: on AWS from CloudTrail (``LookupEvents`` by access key id), on
  the sandbox from its own record of calls (:func:`labkit.sandbox.recorded_calls`, which stands in
  for CloudTrail while IAM is enforced). The file where it was found is read for the key's secret,
  kept in memory only, to prove later that the key is refused.
- **Plan/Act** (:func:`actions`): deactivate the key (not delete it: a deactivated key can be
  switched back on if something vital breaks, and AWS's guidance deletes it only once nothing
  does); create a new key for the user unless it has another active one, and write it into the
  file the application reads, in place of the leaked one.
- **Verify**: a call signed with the old key is refused (``InvalidClientTokenId``, as AWS answers
  an inactive key), and the new key works.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from labkit import sandbox
from labkit.errors import RunbookError
from labkit.ops.runbook import Action
from labkit.target import Credentials, Target

ID_VARIABLE, SECRET_VARIABLE = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
#: What AWS answers a call signed with an inactive or deleted key.
REFUSED_CODES = frozenset({"InvalidClientTokenId", "UnrecognizedClientException", "AccessDenied"})


@dataclass(frozen=True)
class KeyFinding:
    """The leaked key: its user, creation, status, the calls made with it, and the file it is in."""

    access_key_id: str
    user: str
    created: datetime
    status: str
    other_active_keys: tuple[str, ...]
    calls: tuple[dict[str, Any], ...]
    env_file: Path | None
    secret: str | None = field(repr=False, default=None)

    def __str__(self) -> str:
        names: dict[str, int] = {}
        for call in self.calls:
            label = call["eventName"] + (f" ({call['errorCode']})" if call.get("errorCode") else "")
            names[label] = names.get(label, 0) + 1
        did = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items()) or "no recorded call"
        return (
            f"{self.access_key_id} of {self.user}, created {self.created:%Y-%m-%d %H:%M:%S}, {self.status}; "
            f"{len(self.calls)} call(s) since: {did}"
        )


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a dotenv file (``export`` and quotes allowed)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2).strip("'\"")
    return found


def inspect(target: Target, access_key_id: str, env_file: str = "") -> KeyFinding:
    """The key's user and state, and what it did since its creation (reads only)."""
    iam = target.client("iam")
    try:
        user = iam.get_access_key_last_used(AccessKeyId=access_key_id)["UserName"]
    except ClientError as exc:
        raise RunbookError(
            f"IAM knows no access key {access_key_id}: {exc}",
            hint="Check the key id (AKIA...); a key that was deleted already cannot be used.",
        ) from exc
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    key = next(k for k in keys if k["AccessKeyId"] == access_key_id)
    others = tuple(
        k["AccessKeyId"] for k in keys if k["AccessKeyId"] != access_key_id and k["Status"] == "Active"
    )
    created: datetime = key["CreateDate"]
    path = Path(env_file) if env_file else None
    secret = None
    if path is not None and path.exists():
        values = read_env_file(path)
        secret = values.get(SECRET_VARIABLE) if values.get(ID_VARIABLE) == access_key_id else None
    calls = tuple(recorded_calls(target, access_key_id, created))
    return KeyFinding(access_key_id, str(user), created, str(key["Status"]), others, calls, path, secret)


def recorded_calls(target: Target, access_key_id: str, since: datetime) -> list[dict[str, Any]]:
    """The calls made with the key since ``since``, oldest first: CloudTrail's on AWS, the sandbox's
    own record there."""
    if target.is_sandbox:
        return sandbox.recorded_calls(target, access_key_id, since.isoformat())
    found: list[dict[str, Any]] = []
    pages = (
        target.client("cloudtrail")
        .get_paginator("lookup_events")
        .paginate(
            LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}],
            StartTime=since,
        )
    )
    for page in pages:
        for event in page["Events"]:
            detail = json.loads(event.get("CloudTrailEvent") or "{}")
            found.append(
                {
                    "eventTime": event["EventTime"].isoformat(),
                    "eventSource": event.get("EventSource"),
                    "eventName": event.get("EventName"),
                    "awsRegion": detail.get("awsRegion"),
                    "accessKeyId": access_key_id,
                    "errorCode": detail.get("errorCode"),
                }
            )
    return sorted(found, key=lambda e: str(e["eventTime"]))


def actions(target: Target, finding: KeyFinding) -> list[Action]:
    """Deactivate the key while it is active; a new key for its user unless it has another active one."""
    planned: list[Action] = []
    if finding.status == "Active":
        planned.append(
            Action(
                f"deactivate {finding.access_key_id} of {finding.user}",
                lambda: target.client("iam").update_access_key(
                    UserName=finding.user, AccessKeyId=finding.access_key_id, Status="Inactive"
                ),
            )
        )
    if not finding.other_active_keys:
        where = f"write it into {finding.env_file}" if finding.env_file else "report its id"
        planned.append(
            Action(f"create a new access key for {finding.user} and {where}", _rotate(target, finding))
        )
    return planned


def _rotate(target: Target, finding: KeyFinding) -> Callable[[], object]:
    def run() -> str:
        key = target.client("iam").create_access_key(UserName=finding.user)["AccessKey"]
        if finding.env_file is not None:
            write_key(finding.env_file, str(key["AccessKeyId"]), str(key["SecretAccessKey"]))
            return f"new key {key['AccessKeyId']} written to {finding.env_file}"
        return f"new key {key['AccessKeyId']} (its secret was shown once, here: store it now)"

    return run


def write_key(path: Path, access_key_id: str, secret: str) -> None:
    """Put the key into the dotenv file in place of the one there, other lines kept; owner-only."""
    lines = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if not re.match(rf"^\s*(?:export\s+)?({ID_VARIABLE}|{SECRET_VARIABLE})\s*=", line)
    ]
    lines += [f"{ID_VARIABLE}={access_key_id}", f"{SECRET_VARIABLE}={secret}"]
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def _caller(target: Target, access_key_id: str, secret: str) -> str:
    """The ARN that GetCallerIdentity answers for a call signed with this key."""
    if target.is_sandbox:
        sts = target.as_identity(Credentials(access_key_id, secret)).client("sts")
    else:  # an aws Target takes the standard chain's credentials only
        import boto3

        session = boto3.session.Session(access_key_id, secret, region_name=target.region)
        sts = session.client("sts")
    return str(sts.get_caller_identity()["Arn"])


def verify_refused(target: Target, finding: KeyFinding) -> tuple[bool, str]:
    """A call signed with the leaked key is refused."""
    if finding.secret is None:  # a run after the rotation: the file holds the new key
        status = _status(target, finding)
        return status != "Active", f"{status} in IAM (its secret is not in the file given, so no call signed)"
    try:
        arn = _caller(target, finding.access_key_id, finding.secret)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        return code in REFUSED_CODES, f"GetCallerIdentity with it: {code}"
    return False, f"GetCallerIdentity with it still answers {arn}"


def _status(target: Target, finding: KeyFinding) -> str:
    keys = target.client("iam").list_access_keys(UserName=finding.user)["AccessKeyMetadata"]
    return next((str(k["Status"]) for k in keys if k["AccessKeyId"] == finding.access_key_id), "deleted")


def verify_new_key(target: Target, finding: KeyFinding) -> tuple[bool, str]:
    """The key in the application's file is another key of the same user, and it works."""
    if finding.env_file is None:
        return True, "no file given: the new key was reported"
    values = read_env_file(finding.env_file)
    new_id, secret = values.get(ID_VARIABLE, ""), values.get(SECRET_VARIABLE, "")
    if not new_id or new_id == finding.access_key_id:
        return False, f"{finding.env_file} still holds {new_id or 'no key'}"
    arn = _caller(target, new_id, secret)
    return arn.endswith(f":user/{finding.user}"), f"{new_id} in {finding.env_file} answers as {arn}"
