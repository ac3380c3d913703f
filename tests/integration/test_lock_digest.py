"""fix_lock_digest against stock moto: a versioned state bucket and a DynamoDB lock table, then
real Terraform on that backend.

labkit's backend locks with a lock file (``use_lockfile``) on Terraform 1.10+, and with the
DynamoDB table before: :meth:`Stack.backend_config` asks ``terraform_version()``. These tests set
that version (the seam test_stack uses too), so a Stack names ``dynamodb_table`` in its backend.
Terraform 1.11 still honours ``dynamodb_table`` (deprecated), digest included, so the binary on
this machine checks the digest for real.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from labkit.errors import TerraformError
from labkit.infra.stack import Stack, _delete_bucket
from labkit.infra.terraform import Terraform
from labkit.ops.state import fix_lock_digest
from labkit.target import sandbox as sandbox_target

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent / "tf_small"
#: Terraform's message when the state object's MD5 is not the digest in the lock table.
DIGEST_ERROR = "state data in S3 does not have the expected content"


def terraform_at(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """Make backend_config choose the locking it chooses for Terraform ``version``."""
    monkeypatch.setattr("labkit.infra.stack.terraform_version", lambda: version)


@pytest.fixture()
def stack(moto_endpoint: str, labkit_home: Path) -> Iterator[Stack]:
    """staging on moto, with its versioned state bucket and an (empty) lock table; both removed
    afterwards, since moto's backends outlive the test in this process."""
    stack = Stack("staging", sandbox_target(moto_endpoint), reporter=None)
    s3, dynamodb = stack.target.client("s3"), stack.target.client("dynamodb")
    bucket, table = stack.names.state_bucket, stack.names.lock_table
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield stack
    finally:
        _delete_bucket(stack.target, bucket)
        dynamodb.delete_table(TableName=table)


def state(serial: int) -> bytes:
    doc = {"version": 4, "terraform_version": "1.9.8", "lineage": "L", "serial": serial, "resources": []}
    return json.dumps(doc, indent=2).encode()


def current_body(stack: Stack) -> bytes:
    config = stack.backend_config(locking=False)
    return bytes(
        stack.target.client("s3").get_object(Bucket=config["bucket"], Key=config["key"])["Body"].read()
    )


def versions(stack: Stack) -> list[str]:
    config = stack.backend_config(locking=False)
    listed = stack.target.client("s3").list_object_versions(Bucket=config["bucket"], Prefix=config["key"])
    return [v["VersionId"] for v in listed.get("Versions", [])]


def items(stack: Stack) -> list[dict[str, Any]]:
    scanned = stack.target.client("dynamodb").scan(TableName=stack.names.lock_table, ConsistentRead=True)
    return sorted(scanned["Items"], key=lambda item: str(item["LockID"]["S"]))


def restore(stack: Stack, version_id: str) -> None:
    """Copy a version back as the newest object, as restore-state does."""
    config = stack.backend_config(locking=False)
    bucket, key = config["bucket"], config["key"]
    stack.target.client("s3").copy_object(
        Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": version_id}
    )


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def test_a_restored_state_gets_its_digest(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    terraform_at(monkeypatch, "1.9.8")
    config = stack.backend_config()
    assert config["dynamodb_table"] == stack.names.lock_table and "use_lockfile" not in config
    s3 = stack.target.client("s3")
    bucket, key = config["bucket"], config["key"]
    digest_id = {"S": f"{bucket}/{key}-md5"}
    # Terraform wrote serial 1, then serial 2 and its digest; the restore brings serial 1 back.
    first = s3.put_object(Bucket=bucket, Key=key, Body=state(1))["VersionId"]
    s3.put_object(Bucket=bucket, Key=key, Body=state(2))
    stack.target.client("dynamodb").put_item(
        TableName=config["dynamodb_table"], Item={"LockID": digest_id, "Digest": {"S": md5(state(2))}}
    )
    restore(stack, first)
    assert current_body(stack) == state(1)
    before = versions(stack)

    said = fix_lock_digest(stack)

    digest = md5(state(1))
    assert items(stack) == [{"LockID": digest_id, "Digest": {"S": digest}}]
    assert said == f"set the digest in {config['dynamodb_table']} to {digest}"
    assert versions(stack) == before  # the state object is only read


def test_a_lock_file_backend_has_no_digest_to_fix(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    terraform_at(monkeypatch, "1.11.4")
    config = stack.backend_config()
    assert config.get("use_lockfile") == "true" and "dynamodb_table" not in config
    bucket, key = config["bucket"], config["key"]
    stack.target.client("s3").put_object(Bucket=bucket, Key=key, Body=state(1))
    # A digest left from the DynamoDB days, not the object's: a write would replace it.
    stale = {"LockID": {"S": f"{bucket}/{key}-md5"}, "Digest": {"S": md5(b"another state")}}
    stack.target.client("dynamodb").put_item(TableName=stack.names.lock_table, Item=stale)
    before = versions(stack)

    said = fix_lock_digest(stack)

    assert "no digest to fix" in said
    assert items(stack) == [stale]
    assert versions(stack) == before


# -- real Terraform on the same backend -----------------------------------------------------------

NAME = "digest-test"
VARS = {"name": NAME, "tags": {"Owner": "first"}}


@pytest.fixture()
def terraform(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Terraform]:
    """tf_small, initialised with the Stack's own backend settings (DynamoDB locking); the SNS
    topic and parameter it creates are deleted afterwards through the API."""
    terraform_at(monkeypatch, "1.9.8")
    work = tmp_path / "tf_small"
    shutil.copytree(ROOT, work)
    tf = Terraform(work, target=stack.target, data_dir=tmp_path / "tfdata", reporter=None)
    tf.init(backend_config=stack.backend_config())
    try:
        yield tf
    finally:
        sns = stack.target.client("sns")
        for topic in sns.list_topics()["Topics"]:
            if topic["TopicArn"].endswith(f":{NAME}"):
                sns.delete_topic(TopicArn=topic["TopicArn"])
        with contextlib.suppress(ClientError):  # never created
            stack.target.client("ssm").delete_parameter(Name=f"/{NAME}/release")


def test_terraform_accepts_a_restored_state_once_its_digest_is_fixed(
    stack: Stack, terraform: Terraform, monkeypatch: pytest.MonkeyPatch
) -> None:
    terraform.apply(variables=VARS)
    first = versions(stack)[0]  # S3 lists a key's versions newest first
    terraform.apply(variables={**VARS, "tags": {"Owner": "second"}})
    (digest_item,) = items(stack)
    assert digest_item["Digest"]["S"] == md5(current_body(stack))  # Terraform keeps the digest

    restore(stack, first)
    with pytest.raises(TerraformError) as failed:  # after 10 s: Terraform retries a wrong digest
        terraform.plan(variables=VARS)
    assert DIGEST_ERROR in "\n".join(failed.value.diagnostics)

    fix_lock_digest(stack)

    # The last plan checks the digest, which Terraform reads with or without the lock; it skips the
    # lock because once, in a loaded CI run, it met a lock that was its own or the failed plan's
    # (DynamoDB's PutItem refused; not reproduced in 10 loaded runs here).
    monkeypatch.setenv("TF_CLI_ARGS_plan", "-lock=false")
    # Terraform reads the restored state: the tags it recorded are "first", so with refresh off a
    # plan for "second" updates both tagged resources.
    plan = terraform.plan(variables={**VARS, "tags": {"Owner": "second"}}, refresh=False)
    assert sorted((c.address, c.action) for c in plan.changes) == [
        ("aws_sns_topic.this", "update"),
        ("aws_ssm_parameter.release", "update"),
    ]
