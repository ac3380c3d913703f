"""A load probe: requests at a fixed rate through a URL, every one recorded.

Open loop, as real users are: request *i* is due at ``start + i / rate`` whether or not earlier
ones have answered, so a slow or failing release shows up as latency and failures instead of
quietly slowing the probe down. A dispatcher thread hands due requests to a small pool of worker
threads, each with one keep-alive connection, so a few hundred requests per second fit on two
cores (``bench/probe_rate.py`` measures it).

Each request becomes one row of :meth:`Probe.results`: when it was sent (seconds since the start
and wall clock), the phase it was sent in (:meth:`Probe.mark`), HTTP status (0 when no response
came: refused, reset, timed out), the ``color``/``version``/``instance_id`` the app's JSON named,
latency, how late it left (``lag_ms``), and the error. :func:`summarize` turns them into one row
per phase.

Bounds: the rate, the run time (``duration``, else ``max_duration``) and so the request count are
capped; a request that cannot leave within ``timeout`` of its due time (every worker stuck) is
recorded as a probe backlog failure instead of being sent late. The probe refuses URLs that are
not on loopback unless ``allow_remote=True`` (the aws target), and checks the URL's port and every
header before it starts, so bad input is one clear :class:`ProbeError` instead of a failure in each
worker thread.
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from labkit.errors import ProbeError
from labkit.target import is_loopback_url

MAX_RATE = 2000.0
DEFAULT_TIMEOUT_S = 2.0
#: With no ``duration`` the probe runs until :meth:`Probe.stop`, but never longer than this.
DEFAULT_MAX_DURATION_S = 1800.0
#: A connection idle longer than this is reopened instead of reused. Servers close idle
#: keep-alive connections (gunicorn after 2 s by default), and a request written into a
#: connection the server is closing fails through no fault of the release.
MAX_IDLE_S = 1.0
BACKLOG_ERROR = "probe backlog: not sent within the timeout of its due time"
#: A header name is an HTTP token (RFC 9110, section 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Control characters other than tab have no place in a header value or a request target.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

COLUMNS = [
    "elapsed_s",
    "time",
    "phase",
    "status",
    "ok",
    "color",
    "version",
    "instance_id",
    "latency_ms",
    "lag_ms",
    "error",
]


@dataclass(frozen=True)
class Job:
    """One request the dispatcher hands to a worker: its number, when it is due, its phase."""

    index: int
    due: float  # time.monotonic() when it should leave
    phase: str


class Probe:
    """Send GET ``url`` at ``rate`` requests per second in the background and record every answer.

    ``Probe(url, rate=100, duration=30).start()``, ``.mark("shift-10")`` as the deployment moves,
    ``.stop()`` (or ``.wait()`` for the duration to pass), then ``.results()``. Also a context
    manager (start on enter, stop on exit).

    - ``timeout``: seconds to connect and to answer; a request that takes longer is a failure.
    - ``duration``: seconds to run; None runs until :meth:`stop`, bounded by ``max_duration``.
    - ``workers``: connections in the pool; by default enough for 100 ms answers at ``rate``.
    - ``headers``: sent with every request (a preview header, for example).
    - ``allow_remote``: the probe sends only to loopback unless this is True.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float = 100.0,
        timeout: float = DEFAULT_TIMEOUT_S,
        duration: float | None = None,
        max_duration: float = DEFAULT_MAX_DURATION_S,
        workers: int | None = None,
        headers: Mapping[str, str] | None = None,
        allow_remote: bool = False,
        phase: str = "start",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeError(
                f"{url!r} is not an http(s) URL.", hint="Give a URL such as http://127.0.0.1:8080/."
            )
        port = _port(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _CONTROL.search(path) or " " in path:
            raise ProbeError(
                f"The path of {url!r} holds a space or a control character.",
                hint="Percent-encode them (a space is %20).",
            )
        if not allow_remote and not is_loopback_url(url):
            raise ProbeError(
                f"The probe sends only to loopback, and {parts.hostname} is not.",
                hint="In the sandbox, use the load balancer's loopback URL (labkit maps the ALB's DNS "
                "name to it); against AWS pass allow_remote=True (CLI: --allow-remote).",
            )
        _check_range("rate", rate, 0.0, MAX_RATE, "requests per second")
        _check_range("timeout", timeout, 0.0, 60.0, "seconds")
        _check_range("max_duration", max_duration, 0.0, 86_400.0, "seconds")
        if duration is not None:
            _check_range("duration", duration, 0.0, max_duration, "seconds (at most max_duration)")
        if workers is None:
            workers = min(64, max(4, math.ceil(rate * 0.1)))
        elif isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
            raise ProbeError(f"workers is {workers!r}.", hint="Use a whole number from 1 to 256.")
        self.url = url
        self.rate = float(rate)
        self.timeout = float(timeout)
        self.duration = float(duration if duration is not None else max_duration)
        self.workers = workers
        self.headers = _checked_headers(headers or {})
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._path = path
        self._phase = phase
        self._marks: list[tuple[float, str]] = [(0.0, phase)]
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_mono: float | None = None
        self._started_wall = 0.0
        self._dispatcher: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Probe:
        """Start sending in the background; returns the probe."""
        if self._started_mono is not None:
            raise ProbeError("This probe was already started.", hint="Make a new Probe for another run.")
        self._started_wall = time.time()
        self._started_mono = time.monotonic()
        self._threads = [
            threading.Thread(target=self._work, name=f"probe-worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        self._dispatcher = threading.Thread(target=self._dispatch, name="probe-dispatcher", daemon=True)
        for thread in [*self._threads, self._dispatcher]:
            thread.start()
        return self

    def mark(self, phase: str) -> None:
        """Label requests sent from now on with ``phase`` (e.g. ``shift-50``)."""
        with self._lock:
            self._phase = phase
            self._marks.append((self.elapsed(), phase))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the probe's duration has passed and every request is answered.

        True when it has finished; False when ``timeout`` seconds passed first.
        """
        if self._dispatcher is None:
            raise ProbeError("The probe has not been started.", hint="Call start() first.")
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in [self._dispatcher, *self._threads]:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return True

    def stop(self) -> None:
        """Stop sending; requests already due are still sent and answered (each within ``timeout``)."""
        self._stopping.set()
        if self._dispatcher is not None:
            self.wait(timeout=self.timeout * 2 + 5)

    @property
    def running(self) -> bool:
        return self._dispatcher is not None and any(t.is_alive() for t in [self._dispatcher, *self._threads])

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (0 before)."""
        return 0.0 if self._started_mono is None else time.monotonic() - self._started_mono

    def counts(self) -> tuple[int, int]:
        """(requests answered or failed so far, failures among them), for progress lines."""
        with self._lock:
            return len(self._rows), sum(1 for row in self._rows if not row[4])

    @property
    def marks(self) -> list[tuple[float, str]]:
        """(seconds since start, phase) for each :meth:`mark`, the first phase at 0."""
        with self._lock:
            return list(self._marks)

    def results(self) -> pd.DataFrame:
        """Every request so far, in the order they were due; see :data:`COLUMNS`."""
        with self._lock:
            rows = sorted(self._rows, key=lambda row: row[-1])
        frame = pd.DataFrame([row[:-1] for row in rows], columns=COLUMNS)
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame.astype({"status": "int64", "ok": "bool", "latency_ms": "float64", "lag_ms": "float64"})

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- threads ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        assert self._started_mono is not None
        start = self._started_mono
        total = math.floor(self.duration * self.rate)
        try:
            for index in range(total):
                due = start + index / self.rate
                # Sleep in short slices so stop() is noticed quickly even at low rates.
                while (delay := due - time.monotonic()) > 0:
                    if self._stopping.wait(min(delay, 0.1)):
                        return
                if self._stopping.is_set():
                    return
                with self._lock:
                    phase = self._phase
                self._jobs.put(Job(index, due, phase))
        finally:
            for _ in self._threads:
                self._jobs.put(None)  # one "no more work" per worker, after every due job

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        last_used = 0.0
        try:
            while (job := self._jobs.get()) is not None:
                sent = time.monotonic()
                if sent - job.due > self.timeout:
                    self._record(job, sent, 0, None, None, BACKLOG_ERROR)
                    continue
                if connection is not None and sent - last_used > MAX_IDLE_S:
                    connection.close()
                    connection = None
                if connection is None:
                    connection = self._connect()
                status, body, error = self._send(connection, job)
                if status == 0:  # the connection is in an unknown state: start afresh
                    connection.close()
                    connection = None
                last_used = time.monotonic()
                self._record(job, sent, status, body, last_used, error)
        finally:
            if connection is not None:
                connection.close()

    def _send(self, connection: http.client.HTTPConnection, job: Job) -> tuple[int, bytes, str | None]:
        """(status, body, error) of the request for ``job``: a GET of the URL (a subclass may send
        something else, as :class:`~labkit.deploy.writeprobe.WriteProbe` does)."""
        return self._exchange(connection, "GET", self._path)

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, str | None]:
        """(status, body, error) of one request; status 0 when no complete answer came."""
        try:
            connection.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return 0, b"", _error_text(exc, self.timeout)
        status = response.status
        return status, answer, None if 200 <= status < 400 else f"HTTP {status}"

    def _connect(self) -> http.client.HTTPConnection:
        """A new connection to the URL's host (not yet open: the first request opens it)."""
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _record(
        self, job: Job, sent: float, status: int, body: bytes | None, done: float | None, error: str | None
    ) -> None:
        assert self._started_mono is not None
        identity = _identity(body)
        elapsed = sent - self._started_mono
        row = (
            elapsed,
            self._started_wall + elapsed,
            job.phase,
            status,
            200 <= status < 400,
            identity.get("color"),
            identity.get("version"),
            identity.get("instance_id"),
            None if done is None or status == 0 else (done - sent) * 1000,
            (sent - job.due) * 1000,
            error,
            job.index,
        )
        with self._lock:
            self._rows.append(row)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per phase (in the order phases began) and a last row ``all``.

    Columns: ``requests``, ``failed`` (status 0 or >= 400), ``failure_rate``, ``http_5xx``,
    ``no_response`` (status 0), ``p50_ms``/``p95_ms``/``p99_ms``/``max_ms`` over requests that got
    an answer, ``duration_s``, ``rate_rps`` (requests per second sent), then one
    ``color=<c>`` and ``version=<v>`` column per value seen: the share of answers naming it.
    """
    phases = list(dict.fromkeys(frame["phase"])) if len(frame) else []
    groups = [(phase, frame[frame["phase"] == phase]) for phase in phases] + [("all", frame)]
    colors = sorted(c for c in frame["color"].dropna().unique()) if len(frame) else []
    versions = sorted(v for v in frame["version"].dropna().unique()) if len(frame) else []
    rows = []
    for phase, group in groups:
        answered = group[group["status"] > 0]
        latency = answered["latency_ms"].dropna()
        span = float(group["elapsed_s"].max() - group["elapsed_s"].min()) if len(group) > 1 else 0.0
        row: dict[str, Any] = {
            "phase": phase,
            "requests": len(group),
            "failed": int((~group["ok"]).sum()),
            "failure_rate": float((~group["ok"]).mean()) if len(group) else math.nan,
            "http_5xx": int((group["status"] >= 500).sum()),
            "no_response": int((group["status"] == 0).sum()),
            "p50_ms": _quantile(latency, 0.50),
            "p95_ms": _quantile(latency, 0.95),
            "p99_ms": _quantile(latency, 0.99),
            "max_ms": float(latency.max()) if len(latency) else math.nan,
            "duration_s": span,
            "rate_rps": (len(group) - 1) / span if span > 0 else math.nan,
        }
        named = group["color"].notna().sum()
        for color in colors:
            row[f"color={color}"] = float((group["color"] == color).sum() / named) if named else math.nan
        for version in versions:
            row[f"version={version}"] = (
                float((group["version"] == version).sum() / named) if named else math.nan
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("phase")


def _quantile(values: pd.Series, q: float) -> float:
    return float(values.quantile(q)) if len(values) else math.nan


def _identity(body: bytes | None) -> dict[str, str]:
    """color/version/instance_id from the app's JSON; empty for anything else (an LB error page)."""
    if not body or not body.lstrip().startswith(b"{"):
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(data[k]) for k in ("color", "version", "instance_id") if data.get(k) is not None}


def _error_text(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timeout: no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _port(url: str) -> int | None:
    """The URL's port (None for the scheme's default), refused unless it is 1 to 65535."""
    try:
        port = urlsplit(url).port
    except ValueError:  # not a number, or beyond 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ProbeError(
            f"The port in {url!r} is not a number from 1 to 65535.",
            hint="Give a URL such as http://127.0.0.1:8080/, or leave the port out for 80 (443 for https).",
        )
    return port


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` as a dict, each name an HTTP token and each value one line of Latin-1 text.

    A CR or LF in a value would end the header early and send the rest as headers (or a body) of
    its own; http.client refuses it only when a worker sends, where the error would kill the
    worker thread instead of reaching the caller.
    """
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ProbeError(
                f"Header name {name!r} is not an HTTP token.",
                hint="Use letters, digits and - (for example X-Preview).",
            )
        if not isinstance(value, str):
            raise ProbeError(f"Header {name}'s value is {value!r}, not text.", hint="Pass a str.")
        if "\r" in value or "\n" in value:
            raise ProbeError(
                f"Header {name}'s value {value!r} holds a line break (CR or LF).",
                hint="A value is one line; give each header separately (CLI: one --header NAME:VALUE each).",
            )
        if _CONTROL.search(value) or not _is_latin1(value):
            raise ProbeError(
                f"Header {name}'s value {value!r} holds a control character or a character outside Latin-1.",
                hint="Use printable text; percent-encode anything else.",
            )
        checked[name] = value
    return checked


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_range(name: str, value: object, low: float, high: float, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise ProbeError(f"{name} is {value!r}.", hint=f"Use more than {low:g} and at most {high:g} {unit}.")
