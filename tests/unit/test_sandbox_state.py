"""The sandbox's saved state, in process: the file's checks and generations, what cannot be
pickled (moto's pagination generators, a planted object), the allow-list, the locks found in a
restored state, and the service's request filters (Host, what counts as a write).

moto runs in process here (``mock_aws``), unpatched: no server, no sandbox service.
"""

from __future__ import annotations

import io
import json
import pickle
import stat
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from labkit.errors import SaveError, StateFileError
from labkit.sandbox.client import statefile
from labkit.sandbox.client.paths import is_loopback_host, sandbox_paths
from labkit.sandbox.server import persistence

ACCOUNT = "123456789012"


@pytest.fixture()
def moto() -> Iterator[None]:
    """In-process moto with fresh backends (and the environment a client needs)."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(var, "test")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            yield


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


# --- what cannot be pickled ---


def test_a_paginated_tag_read_leaves_a_generator_that_is_not_saved(moto: None, tmp_path: Path) -> None:
    # The cause of issue 19: moto keeps the last page's generator (inventory.leftovers reads so).
    s3 = client("s3")
    for name in ("tagged-a", "tagged-b", "tagged-c"):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "Project", "Value": "x"}]})
    tagging = client("resourcegroupstaggingapi")
    first = tagging.get_resources(ResourcesPerPage=1)
    token = first["PaginationToken"]
    pages = list(tagging.get_paginator("get_resources").paginate(PaginationConfig={"PageSize": 1}))
    assert sum(len(p["ResourceTagMappingList"]) for p in pages) == 3
    from moto.resourcegroupstaggingapi.models import resourcegroupstaggingapi_backends

    backend = resourcegroupstaggingapi_backends[ACCOUNT]["us-east-1"]
    assert backend._pages, "moto no longer leaves pagination state: TRANSIENT may be dropped"
    with pytest.raises(TypeError, match="generator"):
        pickle.dumps(backend._pages)

    path = tmp_path / "aws-state.pickle"
    statefile.save(path, persistence.dumps(persistence.capture()))  # no TypeError
    _, installed = persistence.load(path)

    assert installed > 0
    restored = resourcegroupstaggingapi_backends[ACCOUNT]["us-east-1"]
    assert restored is not backend and restored._pages == {}
    # A read resumed after a restart is told its token expired, as AWS says of an old token.
    with pytest.raises(ClientError, match="PaginationTokenExpired"):
        tagging.get_resources(PaginationToken=token)
    assert len(tagging.get_resources()["ResourceTagMappingList"]) == 3  # a new read works


def plant(obj: Any) -> None:
    from moto.sns.models import sns_backends

    sns_backends[ACCOUNT]["us-east-1"].planted = {"inner": [1, obj]}


def test_a_failed_save_names_the_object_and_a_partial_save_leaves_it_out(moto: None, tmp_path: Path) -> None:
    client("sns").create_topic(Name="kept")
    plant(threading.Lock())

    with pytest.raises(SaveError) as raised:
        persistence.dumps(persistence.capture())
    assert f"sns[{ACCOUNT}][us-east-1].planted['inner'][1]: TypeError" in raised.value.message
    assert "cannot pickle '_thread.lock' object" in raised.value.message

    data, skipped = persistence.dumps_partial(persistence.capture())
    assert len(skipped) == 1 and ".planted['inner'][1]" in skipped[0]
    path = tmp_path / "aws-state.unsaved.pickle"
    statefile.write_private(path, data)
    header, _ = persistence.load(path)
    assert header.skipped == skipped
    from moto.sns.models import sns_backends

    backend = sns_backends[ACCOUNT]["us-east-1"]
    assert backend.planted == {"inner": [1, None]}
    assert [t["TopicArn"].rsplit(":", 1)[1] for t in client("sns").list_topics()["Topics"]] == ["kept"]


# --- the file ---


@pytest.fixture()
def saved(moto: None, tmp_path: Path) -> Path:
    client("s3").create_bucket(Bucket="state")
    path = tmp_path / "aws-state.pickle"
    statefile.save(path, persistence.dumps(persistence.capture()))
    return path


def refusal(path: Path) -> StateFileError:
    with pytest.raises(StateFileError) as raised:
        statefile.read_header(path)
    error = raised.value
    assert str(path) in error.message
    assert "labkit sandbox up --reset" in (error.hint or "") and "--restore" in (error.hint or "")
    return error


def test_a_corrupt_a_truncated_and_a_foreign_file_are_refused_for_what_they_are(saved: Path) -> None:
    good = saved.read_bytes()
    header = statefile.read_header(saved)
    assert (header.labkit, header.moto) == tuple(statefile.versions().values())

    saved.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert refusal(saved).reason == "corrupt"
    saved.write_bytes(good[: len(good) // 2])
    error = refusal(saved)
    assert error.reason == "truncated" and "bytes of state" in error.detail
    saved.write_bytes(good.replace(b'"moto": "', b'"moto": "0.0.1+'))
    error = refusal(saved)
    assert error.reason == "version" and "moto 0.0.1+" in error.detail and "this is labkit" in error.detail
    saved.write_bytes(b"")
    assert refusal(saved).reason == "truncated"


class Format1Pickler(persistence._Pickler):
    """As labkit pickled before versions were recorded: methods by ``getattr``, moto's registries
    by persistent id."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self.dispatch_table = {k: v for k, v in self.dispatch_table.items() if k is not types.MethodType}

    def persistent_id(self, obj: Any) -> Any:
        from moto.core.base_backend import AccountSpecificBackend, BackendDict

        if isinstance(obj, (BackendDict, AccountSpecificBackend)):
            return ("moto-registry", obj.service_name, getattr(obj, "account_id", None))
        return None


def test_a_file_of_the_format_before_versions_were_recorded_still_loads(moto: None, tmp_path: Path) -> None:
    # Format 1 was a bare pickle of {"format": 1, "backends": ...}, moto's methods saved by getattr.
    client("ec2").create_security_group(GroupName="web", Description="d")
    buffer = io.BytesIO()
    Format1Pickler(buffer, 5).dump({"format": 1, "backends": persistence.capture()})
    legacy = buffer.getvalue()
    assert b"getattr" in legacy
    path = tmp_path / "aws-state.pickle"
    path.write_bytes(legacy)
    header, installed = persistence.load(path)
    assert (header.format, header.moto, installed > 0) == (1, "unknown", True)
    groups = client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["web"]}])
    assert len(groups["SecurityGroups"]) == 1  # moto's filter methods came back
    path.write_bytes(pickle.dumps({"format": 1, "backends": {"x": (os_system, ("true",))}}))
    with pytest.raises(StateFileError) as raised:
        persistence.load(path)
    assert raised.value.reason == "version" and "format 1" in raised.value.detail


def os_system(command: str) -> int:
    raise AssertionError("never called: the allow-list refuses this module")


def test_saves_keep_three_generations_private(saved: Path) -> None:
    for _ in range(4):
        statefile.save(saved, persistence.dumps(persistence.capture()))
    kept = statefile.kept_generations(saved)
    assert [p.name for p, _ in kept] == ["aws-state.1.pickle", "aws-state.2.pickle", "aws-state.3.pickle"]
    assert not (saved.parent / "aws-state.4.pickle").exists()
    for path in [saved, *(p for p, _ in kept)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    saved.write_bytes(b"garbage")
    assert all(str(p) in refusal(saved).hint for p, _ in kept)  # type: ignore[operator]


def test_the_sandbox_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "sandbox"
    root.mkdir(mode=0o755)
    monkeypatch.setenv("LABKIT_SANDBOX_HOME", str(root))
    assert stat.S_IMODE(sandbox_paths().root.stat().st_mode) == 0o700


def test_unpickling_refuses_what_is_not_on_the_allow_list(moto: None) -> None:
    import os
    from collections import OrderedDict

    from moto.sns.models import sns_backends

    class Reduced:
        def __init__(self, *reduced: Any) -> None:
            self.reduced = reduced

        def __reduce__(self) -> Any:
            return self.reduced

    backend = sns_backends[ACCOUNT]["us-east-1"]
    refused = {
        "a function": (os.system, ("echo pwned",)),
        "getattr on another object": (getattr, (OrderedDict(), "keys")),
        "getattr to a private name": (getattr, (backend, "__init__")),
    }
    for reduced in refused.values():
        with pytest.raises(pickle.UnpicklingError, match=r"allow-list|not allowed"):
            persistence.loads(pickle.dumps({"backends": Reduced(*reduced)}))


# --- locks in a restored state ---


def test_terraform_and_deployment_locks_are_found_with_holder_and_age(moto: None) -> None:
    from labkit.deploy.ledger import Ledger
    from labkit.sandbox.server.locks import find_locks
    from labkit.target import Target

    info = {"ID": "f00d", "Who": "root@vm", "Created": "2026-12-02T06:20:43.123456789Z"}
    s3 = client("s3")
    s3.create_bucket(Bucket="state")
    s3.put_object(Bucket="state", Key="staging/terraform.tfstate.tflock", Body=json.dumps(info).encode())
    s3.put_object(Bucket="state", Key="global/terraform.tfstate.tflock", Body=b"{}")
    s3.delete_object(Bucket="state", Key="global/terraform.tfstate.tflock")  # released: a delete marker
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName="locks",
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    lock_item = {"LockID": {"S": "state/staging/x"}, "Info": {"S": json.dumps(info)}}
    dynamodb.put_item(TableName="locks", Item=lock_item)
    dynamodb.put_item(TableName="locks", Item={"LockID": {"S": "state/staging/x-md5"}, "Digest": {"S": "d"}})
    dynamodb.create_table(
        TableName="ledger",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ledger = Ledger(Target(name="sandbox", region="us-east-1", endpoint_url="http://127.0.0.1:1"), "ledger")
    ledger._client = dynamodb  # in-process moto answers for the sandbox's endpoint
    ledger.acquire_lock("staging", "ann@vm pid 42", "20261202T062000Z-abc")

    found = {lock.kind: lock for lock in find_locks()}

    assert sorted(found) == ["deployment", "terraform-dynamodb", "terraform-s3"]
    s3_lock = found["terraform-s3"]
    assert s3_lock.where == "s3://state/staging/terraform.tfstate.tflock"
    assert (s3_lock.holder, s3_lock.lock_id) == ("root@vm", "f00d")
    assert (s3_lock.age_s() or 0) > 0
    assert "held by root@vm since 2026-12-02T06:20:43" in s3_lock.summary()
    assert found["terraform-dynamodb"].where == "dynamodb://locks/state/staging/x"
    assert "ann@vm pid 42 (deployment 20261202T062000Z-abc)" in found["deployment"].summary()


# --- the service's request filters ---


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:4566", True),
        ("localhost:4566", True),
        ("LOCALHOST", True),
        ("[::1]:4566", True),
        ("127.0.0.1", True),
        ("evil.example:4566", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:80", False),
        ("127.0.0.2:4566", False),
        ("[::2]:80", False),
        ("[::1]x", False),
        ("", False),
    ],
)
def test_only_loopback_hosts_are_answered(host: str, ok: bool) -> None:
    assert is_loopback_host(host) is ok


def environ(method: str, path: str = "/", body: bytes = b"", **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": headers.pop("query", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    env.update({f"HTTP_{k.upper()}": v for k, v in headers.items() if k != "content_type"})
    if "content_type" in headers:
        env["CONTENT_TYPE"] = headers["content_type"]
    return env


def test_writes_are_told_from_reads_and_terraform_unlocks_save_at_once() -> None:
    from labkit.sandbox.server.service import _classify

    form = "application/x-www-form-urlencoded; charset=utf-8"
    unlock = b'{"TableName": "locks", "Key": {"LockID": {"S": "state/staging/terraform.tfstate"}}}'
    cases = {
        "describe": (environ("POST", body=b"Action=DescribeVpcs", content_type=form), (False, False)),
        "create": (environ("POST", body=b"Action=CreateVpc&CidrBlock=x", content_type=form), (True, False)),
        "get-item": (environ("POST", x_amz_target="DynamoDB_20120810.GetItem"), (False, False)),
        "put-item": (environ("POST", x_amz_target="DynamoDB_20120810.PutItem"), (True, False)),
        "unlock": (environ("POST", body=unlock, x_amz_target="DynamoDB_20120810.DeleteItem"), (True, True)),
        "s3-get": (environ("GET", "/state/staging/terraform.tfstate"), (False, False)),
        "s3-put": (environ("PUT", "/state/staging/terraform.tfstate"), (True, False)),
        "s3-unlock": (environ("DELETE", "/state/staging/terraform.tfstate.tflock"), (True, True)),
    }
    for name, (env, expected) in cases.items():
        body_before = env["wsgi.input"].getvalue()
        assert _classify(env) == expected, name
        assert env["wsgi.input"].read() == body_before, f"{name}: the body must reach moto whole"


def test_a_retried_write_gets_the_answer_it_lost_and_runs_once(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK retries an invocation whose answer it lost (``attempt=2``, same invocation id): the
    sandbox gives the first answer again rather than running a call that is not idempotent twice."""
    from labkit.sandbox.server.service import _Api

    caplog.set_level("INFO", logger="labkit.sandbox")
    runs: list[bytes] = []

    def moto_app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        body = env["wsgi.input"].read()
        runs.append(body)
        failed = b"Fail" in body
        start_response("400 Bad Request" if failed else "200 OK", [("Content-Type", "text/xml")])
        return [b"answer %d" % len(runs)]

    writes: list[bool] = []
    api = _Api(moto_app, threading.RLock(), dict, writes.append, lambda _: {}, lambda _: {})
    form = "application/x-www-form-urlencoded"

    def call(body: bytes, invocation: str, attempt: int) -> tuple[str, bytes]:
        got: list[str] = []
        sdk = {"amz_sdk_invocation_id": invocation, "amz_sdk_request": f"attempt={attempt}; max=25"}
        env = environ("POST", body=body, content_type=form, host="127.0.0.1:4566", **sdk)
        answer = b"".join(api(env, lambda status, _headers: got.append(status)))
        return got[0], answer

    revoke = b"Action=RevokeSecurityGroupEgress&GroupId=sg-1"
    assert call(revoke, "inv-1", 1) == ("200 OK", b"answer 1")
    assert call(revoke, "inv-1", 2) == ("200 OK", b"answer 1")  # the lost answer, not a second run
    assert runs == [revoke] and writes == [False]
    assert "the answer it lost: RevokeSecurityGroupEgress" in caplog.text  # the log names the call
    # A new invocation of the same call runs; so do reads and a retry of a call that failed.
    assert call(revoke, "inv-2", 1) == ("200 OK", b"answer 2")
    describe = b"Action=DescribeSecurityGroups"
    assert call(describe, "inv-3", 1)[1] == b"answer 3"
    assert call(describe, "inv-3", 2)[1] == b"answer 4"
    fail = b"Action=CreateFailingThing"
    assert call(fail, "inv-4", 1) == ("400 Bad Request", b"answer 5")
    assert call(fail, "inv-4", 2) == ("400 Bad Request", b"answer 6")
    assert len(runs) == 6


def test_moto_served_one_at_a_time_gives_a_retried_write_its_lost_answer() -> None:
    """The test suite's and the aws path's moto (:class:`OneAtATime`): requests in turn, a retry of a
    POST whose answer was lost answered again, a retried GET run again."""
    from labkit.sandbox.server.replay import OneAtATime

    runs: list[str] = []
    inside = threading.Lock()

    def moto_app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        assert inside.acquire(blocking=False), "two requests ran at once"
        try:
            runs.append(env["REQUEST_METHOD"])
            time.sleep(0.01)
            start_response("200 OK", [])
            return [b"answer %d" % len(runs)]
        finally:
            inside.release()

    replayed: list[str] = []
    app = OneAtATime(moto_app, on_replay=lambda env: replayed.append(env["HTTP_AMZ_SDK_INVOCATION_ID"]))

    def call(method: str, invocation: str, attempt: int) -> bytes:
        sdk = {"amz_sdk_invocation_id": invocation, "amz_sdk_request": f"attempt={attempt}; max=5"}
        return b"".join(app(environ(method, body=b"{}", **sdk), lambda status, headers: None))

    assert call("POST", "put-1", 1) == b"answer 1"
    assert call("POST", "put-1", 2) == b"answer 1" and replayed == ["put-1"]
    assert call("GET", "get-1", 1) == b"answer 2"
    assert call("GET", "get-1", 2) == b"answer 3"
    threads = [threading.Thread(target=call, args=("POST", f"put-{n}", 1)) for n in range(2, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 9  # all ran, none at once (moto_app's assert)
