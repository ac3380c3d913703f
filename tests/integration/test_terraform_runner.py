"""labkit.infra.terraform driving real Terraform against moto's server, state in S3 with DynamoDB locking."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.errors import StateLockedError
from labkit.infra.terraform import LOCK_FILE, PlanResult, Terraform, _changes
from labkit.settings import plugin_mirror
from labkit.target import Target, sandbox

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent / "tf_small"
BUCKET = "runner-test-tfstate"
LOCK_TABLE = "runner-test-locks"
KEY = "small/terraform.tfstate"


@pytest.fixture(scope="module")
def target(moto_endpoint: str) -> Target:
    target = sandbox(moto_endpoint)
    s3 = target.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    target.client("dynamodb").create_table(
        TableName=LOCK_TABLE,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return target


def backend(target: Target) -> dict[str, str]:
    return {
        "bucket": BUCKET,
        "key": KEY,
        "region": target.region,
        "dynamodb_table": LOCK_TABLE,
        "use_path_style": "true",
        "skip_credentials_validation": "true",
        "skip_requesting_account_id": "true",
        "skip_metadata_api_check": "true",
    }


@pytest.fixture(scope="module")
def tf(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terraform]:
    work = tmp_path_factory.mktemp("tf_small")
    shutil.copytree(ROOT, work, dirs_exist_ok=True)
    lines: list[str] = []
    runner = Terraform(work, target=target, data_dir=work / ".tfdata", reporter=lines.append)
    runner.lines = lines  # type: ignore[attr-defined]
    runner.init(backend_config=backend(target))
    yield runner


VARS = {"name": "runner-test", "tags": {"Project": "bluegreen-lab", "Owner": "tests"}}


def test_full_lifecycle_in_an_s3_backend(tf: Terraform, target: Target) -> None:
    # plan: two resources to create, reported as a parsed plan with exit code 2
    plan = tf.plan(variables=VARS)
    assert plan.exit_code == 2
    assert sorted((c.address, c.action) for c in plan.changes) == [
        ("aws_sns_topic.this", "create"),
        ("aws_ssm_parameter.release", "create"),
    ]
    # ... read from the plan's -json stream; `terraform show` runs only when the whole plan is asked
    # for, and finds the same changes
    assert "show" not in [args[0] for args in tf.commands]
    assert same_changes(plan)
    assert [args[0] for args in tf.commands].count("show") == 1

    # apply: live progress resource by resource, and the outputs it left, from its own JSON: the
    # apply was the one command it took
    ran = len(tf.commands)
    result = tf.apply(variables=VARS)
    assert [args[0] for args in tf.commands[ran:]] == ["apply"]
    assert (result.added, result.changed, result.removed) == (2, 0, 0)
    assert any("aws_sns_topic.this: Creation complete" in line for line in tf.lines)  # type: ignore[attr-defined]
    assert result.outputs["parameter_name"] == "/runner-test/release"

    # output: the same outputs, and the real topic exists in the emulated account
    outputs = tf.output()
    assert outputs == result.outputs
    topics = [t["TopicArn"] for t in target.client("sns").list_topics()["Topics"]]
    assert outputs["topic_arn"] in topics

    # the state lives in the S3 backend, and DynamoDB locking recorded its digest
    state = json.loads(target.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    assert {r["type"] for r in state["resources"]} == {"aws_sns_topic", "aws_ssm_parameter"}
    assert tf.state_pull()["serial"] == state["serial"]
    digest = target.client("dynamodb").get_item(
        TableName=LOCK_TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}-md5"}}
    )
    assert "Item" in digest

    # a second plan with the same inputs has no changes: exit code 0
    again = tf.plan(variables=VARS)
    assert again.exit_code == 0 and again.changes == []

    # a changed map variable is an in-place update of exactly the tagged resources
    changed = tf.plan(variables={**VARS, "tags": {"Project": "bluegreen-lab", "Owner": "ops"}})
    assert sorted((c.address, c.action) for c in changed.changes) == [
        ("aws_sns_topic.this", "update"),
        ("aws_ssm_parameter.release", "update"),
    ]
    assert same_changes(changed)
    # a new name replaces both (the stream says "replace"; show lists delete and create)
    renamed = tf.plan(variables={**VARS, "name": "runner-renamed"})
    assert {c.action for c in renamed.changes} == {"replace"} and same_changes(renamed)

    # destroy removes everything it created
    gone = tf.destroy(variables=VARS)
    assert gone.removed == 2
    assert target.client("sns").list_topics()["Topics"] == []
    assert tf.state_list() == []


def same_changes(plan: PlanResult) -> bool:
    """The plan's changes (from its -json stream) are those `terraform show -json` lists."""
    shown = _changes(plan.raw["resource_changes"])
    return [(c.address, c.action, c.resource_type) for c in plan.changes] == sorted(
        (c.address, c.action, c.resource_type) for c in shown
    )


def test_a_held_lock_raises_state_locked_with_terraforms_message(tf: Terraform, target: Target) -> None:
    lock_id = f"{BUCKET}/{KEY}"
    info = {
        "ID": "d3adb33f-0000-0000-0000-000000000000",
        "Operation": "OperationTypeApply",
        "Who": "someone@elsewhere",
        "Version": "1.11.4",
        "Created": "2026-01-01T00:00:00Z",
        "Path": lock_id,
        "Info": "",
    }
    dynamodb = target.client("dynamodb")
    dynamodb.put_item(TableName=LOCK_TABLE, Item={"LockID": {"S": lock_id}, "Info": {"S": json.dumps(info)}})
    try:
        with pytest.raises(StateLockedError) as raised:
            tf.apply(variables=VARS)
        assert "Error acquiring the state lock" in str(raised.value)
        assert "force-unlock" in str(raised.value)
        # nothing was created while the lock was held
        assert target.client("sns").list_topics()["Topics"] == []
    finally:
        tf.force_unlock(info["ID"])
    assert "Item" not in dynamodb.get_item(TableName=LOCK_TABLE, Key={"LockID": {"S": lock_id}})


def test_init_runs_again_only_when_the_configuration_or_the_backend_changed(
    tf: Terraform, target: Target
) -> None:
    # Another runner on the same root and data dir, as a new Stack is: the fixture's init stands.
    again = Terraform(tf.workdir, target=target, data_dir=tf.data_dir, reporter=None)
    settings = backend(target)
    assert again.init(backend_config=settings, if_changed=True) is False

    main = tf.workdir / "main.tf"
    original = main.read_text()
    try:
        main.write_text(original + "\n# Any change to a .tf file counts, even a comment.\n")
        assert again.init(backend_config=settings, if_changed=True) is True
        assert again.init(backend_config=settings, if_changed=True) is False
    finally:
        main.write_text(original)
    assert again.init(backend_config=settings, if_changed=True) is True  # back as it was: changed too

    # Other backend settings, then the old ones again: an init each time.
    assert again.init(backend_config={**settings, "max_retries": "3"}, if_changed=True) is True
    assert again.init(backend_config=settings, if_changed=True) is True
    assert again.init(backend_config=settings, if_changed=True) is False
    assert [args[0] for args in again.commands] == ["init"] * 4
    # Each init left the lock file without the mirrored provider's hashes (which every later
    # command would check by hashing the 700 MB provider), and the stamp matched it as left.
    lock = (tf.workdir / LOCK_FILE).read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert ("hashes" in lock) is (plugin_mirror() is None)
    assert again.init(backend_config=settings) is True  # without if_changed, init always runs
