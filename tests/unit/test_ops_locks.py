"""The unlock-state runbook's pure logic: reading Terraform's lock info and refusing a live holder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labkit.errors import LockHolderAliveError
from labkit.ops.locks import LockFinding, StateLock, parse_created, require_gone

INFO = {
    "ID": "0b6f3c1e-1111-2222-3333-444455556666",
    "Operation": "OperationTypeApply",
    "Info": "",
    "Who": "dev@build-host",
    "Version": "1.11.4",
    "Created": "2026-12-02T13:57:19.123456789Z",
    "Path": "bglab-tfstate/staging/terraform.tfstate",
}


def test_terraforms_created_reads_to_the_microsecond() -> None:
    assert parse_created(INFO["Created"]) == datetime(2026, 12, 2, 13, 57, 19, 123456, tzinfo=UTC)
    assert parse_created("2026-12-02T13:57:19Z") == datetime(2026, 12, 2, 13, 57, 19, tzinfo=UTC)
    assert parse_created("2026-12-02T14:57:19.5+01:00") == datetime(
        2026, 12, 2, 13, 57, 19, 500000, tzinfo=UTC
    )
    assert parse_created("yesterday") is None


def test_the_lock_says_who_what_and_how_long_ago() -> None:
    lock = StateLock.from_info(INFO)
    assert (lock.id, lock.who, lock.host, lock.operation) == (
        INFO["ID"],
        "dev@build-host",
        "build-host",
        "OperationTypeApply",
    )
    now = datetime(2026, 12, 2, 13, 59, 19, 123456, tzinfo=UTC)
    assert lock.age_s(now) == pytest.approx(120.0)
    text = lock.describe(now)
    assert (
        INFO["ID"] in text
        and "dev@build-host" in text
        and "OperationTypeApply" in text
        and "120 s ago" in text
    )
    assert StateLock.from_info({"ID": "x", "Who": "nobody"}).host == ""


def test_a_holder_that_may_still_run_is_refused_with_what_to_do() -> None:
    finding = LockFinding("staging", StateLock.from_info(INFO), alive=("Terraform runs (pid 42)",))
    assert not finding.holder_gone
    with pytest.raises(LockHolderAliveError, match="pid 42") as raised:
        require_gone(finding)
    assert "run this runbook again" in str(raised.value.hint)


def test_a_holder_proven_gone_gives_the_proofs() -> None:
    finding = LockFinding("staging", StateLock.from_info(INFO), gone=("no Terraform", "no deployment"))
    assert finding.holder_gone
    assert require_gone(finding) == "no Terraform; no deployment"
    assert "gone: no deployment" in str(finding)
    free = LockFinding("staging", None)
    assert not free.holder_gone and "not locked" in str(free)
