"""Drill ``credential-leak``: an IAM user's access key written into a ``.env`` file where it must
not be (a folder the drill names, standing in for a commit, a log or a shared drive), and used by
whoever found it: a few calls, one of them refused. ``credential-leak`` deactivates the key, lists
what it did from the sandbox's record of calls (CloudTrail on AWS), gives the user a new key in the
file the application reads, and proves the old key refused.

Needs IAM enforced in the sandbox (its default; ``LABKIT_SANDBOX_IAM``): without it no key is ever
refused and no call is recorded, and the injection says so. The user, ``bglab-ENV-uploader``, is
the drill's own; its tag ``labkit:leaked-key`` names the key that leaked, which the drill's check
reads.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import DrillError
from labkit.lab.run import runs_root
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.target import Credentials, Target

LEAK_TAG = "labkit:leaked-key"
#: What the key may do: list the buckets and read the releases (an uploader's reading half).
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:ListBucket"], "Resource": "*"}],
}


def user_name(environment: str) -> str:
    return f"bglab-{environment}-uploader"


def inject(target: Target, environment: str) -> dict[str, Any]:
    """Give the drill's user a fresh key, write it into a ``.env``, and use it as a finder would."""
    iam, user = target.client("iam"), user_name(environment)
    try:
        iam.create_user(UserName=user)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
    iam.put_user_policy(UserName=user, PolicyName="uploader", PolicyDocument=json.dumps(POLICY))
    for old in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:  # an earlier run's keys
        iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    key_id, secret = str(key["AccessKeyId"]), str(key["SecretAccessKey"])
    iam.tag_user(UserName=user, Tags=[{"Key": LEAK_TAG, "Value": key_id}])
    folder = runs_root() / "drills" / "credential-leak" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder.mkdir(parents=True, exist_ok=True)
    env_file = folder / ".env"
    env_file.write_text(f"APP_NAME=uploader\nAWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    finder = target.as_identity(Credentials(key_id, secret))
    made = ["GetCallerIdentity", "ListBuckets"]
    finder.client("sts").get_caller_identity()
    finder.client("s3").list_buckets()
    try:
        finder.client("iam").list_users()
        raise DrillError(
            "A call the leaked key has no right to (iam:ListUsers) was allowed: IAM is not enforced.",
            hint="Enforce it: `labkit.sandbox.set_iam_enforced(target, True)`, or restart the sandbox with "
            "LABKIT_SANDBOX_IAM=enforce.",
        )
    except ClientError as exc:
        made.append(f"ListUsers ({exc.response.get('Error', {}).get('Code')})")
    return {
        "user": user,
        "access_key_id": key_id,
        "env_file": str(env_file),
        "created": key["CreateDate"].isoformat(),
        "calls_made": made,
    }


def leaked_key_disabled(target: Target, environment: str) -> Check:
    """The key named by the drill user's leak tag is inactive or gone, and the user has another
    active key (read from IAM)."""
    iam, user = target.client("iam"), user_name(environment)
    try:
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=user)["Tags"]}
    except ClientError:
        return True, f"no user {user}: nothing leaked"
    leaked = tags.get(LEAK_TAG)
    if leaked is None:
        return True, "no leaked key recorded"
    keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    if keys.get(leaked) == "Active":
        return False, f"the leaked key {leaked} of {user} is active"
    others = [k for k, status in keys.items() if k != leaked and status == "Active"]
    return bool(others), f"{leaked} {keys.get(leaked, 'deleted')}; active: {', '.join(others) or 'none'}"


def _runbook_parameters(facts: dict[str, Any]) -> dict[str, Any]:
    return {"access_key_id": facts["access_key_id"], "env_file": str(Path(facts["env_file"]))}


DRILL = Drill(
    name="credential-leak",
    summary="an IAM user's access key found in a .env file and used by whoever found it",
    inject=inject,
    runbook="credential-leak",
    checks={"leaked-key-disabled": leaked_key_disabled},
    runbook_parameters=_runbook_parameters,
    steady_state=("alb-serves",),
)
