"""restore-environment reads the state bucket's history for the last applied deployment; a drill
that corrupted the state before (lesson 10 runs corrupt-state first) leaves versions that are not
JSON, or not even UTF-8, in that history. Against stock moto's S3."""

from __future__ import annotations

import json
import os

import pytest

from labkit.infra.stack import Stack, state_key
from labkit.ops.restore import kept_states
from labkit.target import sandbox as sandbox_target

pytestmark = pytest.mark.integration


def test_versions_that_do_not_parse_are_skipped(moto_endpoint: str) -> None:
    stack = Stack("staging", sandbox_target(moto_endpoint))
    s3 = stack.target.client("s3")
    bucket, key = stack.names.state_bucket, state_key("staging")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    good = {"version": 4, "lineage": "L", "serial": 3, "resources": [], "outputs": {}}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(good).encode())
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"version": 4, "lin')  # truncated
    s3.put_object(Bucket=bucket, Key=key, Body=b"\xc3\x28" + os.urandom(64))  # not UTF-8
    assert [state for _, state in kept_states(stack)] == [good]
