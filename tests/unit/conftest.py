"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from labkit.target import Target


@pytest.fixture()
def moto_target(monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """An ``aws`` Target on moto's in-process mock (fresh backends; no profile, no network)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield Target(name="aws", region="us-east-1")
