"""The write probe's URL and verdict (tests/integration/test_app_database.py runs it on an app)."""

from __future__ import annotations

import pytest

from labkit import ProbeError
from labkit.deploy.writeprobe import WriteCheck, WriteProbe, orders_url


@pytest.mark.parametrize(
    ("url", "orders"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/orders"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/orders"),
        ("http://127.0.0.1:8080/orders/", "http://127.0.0.1:8080/orders"),
        ("http://127.0.0.1/shop?x=1", "http://127.0.0.1/shop/orders"),
    ],
)
def test_the_probe_writes_to_the_orders_under_its_url(url: str, orders: str) -> None:
    assert orders_url(url) == orders
    assert WriteProbe(url).url == orders


def test_the_write_probe_keeps_the_read_probes_guards() -> None:
    with pytest.raises(ProbeError, match="only to loopback"):
        WriteProbe("http://example.com/")
    assert WriteProbe("http://127.0.0.1/").rate == 20.0


def test_only_lost_or_unchecked_writes_fail_the_check() -> None:
    clean = WriteCheck(sent=10, acknowledged=8, found=8)
    assert clean.ok and clean.failed == 2  # failed writes were never acknowledged: not lost
    assert not WriteCheck(sent=10, acknowledged=10, found=9, lost=[4]).ok
    assert not WriteCheck(sent=10, acknowledged=10, found=9, unreadable=[4]).ok
