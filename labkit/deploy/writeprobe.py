"""A write probe: orders POSTed at a fixed rate, then every acknowledged one read back.

A deployment that loses data can look healthy to a read probe: every request answered, and
still a write that was acknowledged (201) is gone afterwards (a migration that dropped it, a
restore to an earlier point). :class:`WriteProbe` is the read probe's open loop sending
``POST /orders`` with an item unique to the write; it keeps the id of every write the app
acknowledged, and :meth:`WriteProbe.verify` then reads each one back with ``GET /orders/ID``:
a write is lost when the read answers 404 or another item. A read that gets no answer is
retried, and counted as unreadable (not lost) if it never gets one, so the lost count is exact.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from labkit.deploy.probe import Job, Probe

DEFAULT_WRITE_RATE = 20.0
#: Attempts to read one write back before it counts as unreadable.
READ_ATTEMPTS = 3


@dataclass(frozen=True)
class WriteCheck:
    """What :meth:`WriteProbe.verify` found."""

    sent: int
    acknowledged: int
    #: Acknowledged writes read back with their item.
    found: int
    #: Ids of acknowledged writes that are gone (404) or hold another item; None for a 201 that
    #: named no id.
    lost: list[int | None] = field(default_factory=list)
    #: Ids whose reads never got an answer (the app or its database down while verifying).
    unreadable: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Writes the app did not acknowledge (errors, timeouts): failed, but not lost."""
        return self.sent - self.acknowledged

    @property
    def ok(self) -> bool:
        """No lost write, and every acknowledged one checked."""
        return not self.lost and not self.unreadable

    def summary(self) -> str:
        return (
            f"writes: {self.sent} sent, {self.acknowledged} acknowledged, {self.failed} failed; "
            f"read back: {self.found} found, {len(self.lost)} lost, {len(self.unreadable)} unreadable"
        )


def orders_url(url: str) -> str:
    """The orders collection under ``url``: ``http://h:p/`` -> ``http://h:p/orders`` (a URL that
    already ends in /orders is kept)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/orders"):
        path += "/orders"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class WriteProbe(Probe):
    """``POST /orders`` under ``url`` at ``rate`` writes per second; see the module's docstring.

    Takes :class:`~labkit.deploy.probe.Probe`'s arguments; its :meth:`results` rows are the
    writes. After :meth:`stop` (or :meth:`wait`), :meth:`verify` reads every acknowledged write.
    """

    def __init__(self, url: str, *, rate: float = DEFAULT_WRITE_RATE, **kwargs: Any) -> None:
        super().__init__(orders_url(url), rate=rate, **kwargs)
        #: In every item, so that this run's writes are told from any other's.
        self.run_id = secrets.token_hex(4)
        self._acknowledged: dict[int, tuple[int | None, str]] = {}  # job index -> (id, item)

    def item(self, index: int) -> str:
        """The item of write ``index``."""
        return f"probe-{self.run_id}-{index}"

    def _send(self, connection: http.client.HTTPConnection, job: Job) -> tuple[int, bytes, str | None]:
        body = json.dumps({"item": self.item(job.index)}).encode()
        return self._exchange(connection, "POST", self._path, body, {"Content-Type": "application/json"})

    def _record(
        self, job: Job, sent: float, status: int, body: bytes | None, done: float | None, error: str | None
    ) -> None:
        super()._record(job, sent, status, body, done, error)
        if status == 201:
            with self._lock:
                self._acknowledged[job.index] = (_order_id(body), self.item(job.index))

    def acknowledged(self) -> dict[int | None, str]:
        """Each acknowledged write's id -> its item (None: a 201 that named no id)."""
        with self._lock:
            return dict(self._acknowledged.values())

    def verify(self) -> WriteCheck:
        """Read every acknowledged write back, one at a time on one keep-alive connection."""
        with self._lock:
            sent, writes = len(self._rows), sorted(self._acknowledged.values(), key=lambda w: w[0] or 0)
        found = 0
        lost: list[int | None] = []
        unreadable: list[int] = []
        connection = self._connect()
        try:
            for order_id, item in writes:
                if order_id is None:
                    lost.append(None)
                    continue
                status, answer = self._read_back(connection, order_id)
                if status == 0:
                    unreadable.append(order_id)
                elif status == 200 and _item(answer) == item:
                    found += 1
                else:
                    lost.append(order_id)
        finally:
            connection.close()
        return WriteCheck(sent, len(writes), found, lost, unreadable)

    def _read_back(self, connection: http.client.HTTPConnection, order_id: int) -> tuple[int, bytes]:
        """(status, body) of GET /orders/ID; status 0 when no answer came in READ_ATTEMPTS tries.
        A 5xx is retried too: an answer from an app that could not reach its database says
        nothing about the write."""
        status, answer = 0, b""
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(0.2 * attempt)
            status, answer, _ = self._exchange(connection, "GET", f"{self._path}/{order_id}")
            if status in (200, 404):
                return status, answer
            connection.close()  # the next request opens it afresh
        return 0, answer


def _json(body: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(body or b"")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _order_id(body: bytes | None) -> int | None:
    found = _json(body).get("id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def _item(body: bytes) -> str | None:
    found = _json(body).get("item")
    return found if isinstance(found, str) else None
