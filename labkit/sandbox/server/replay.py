"""The answers to recent writes, kept so that a client's retry of a call whose answer it lost gets
that answer again instead of running the call twice.

Seen in the sandbox under load (CI, four workers on two cores): the AWS SDK sends a call, the
service runs it and answers, the answer never reaches the client, and the SDK retries the same
invocation (``amz-sdk-invocation-id``, ``amz-sdk-request: attempt=2``). A call that is not
idempotent then fails as a duplicate of itself: Terraform's ``aws_security_group`` revokes the
default egress rule, and the retry answers ``InvalidPermission.NotFound``; the apply fails and
the group is left tainted. AWS answers reliably, so what AWS would have done is the first answer.

Only successful answers are kept (a failed call changed nothing, and running it again is what AWS
would do), and only for calls the caller says may write; the newest :data:`KEEP` by invocation.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Answers kept (the oldest go first): a retry follows its lost answer within seconds.
KEEP = 2000


@dataclass(frozen=True)
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class Answers:
    """The successful answers to recent writes, by the SDK's invocation id."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def lost(self, environ: dict[str, Any]) -> Answer | None:
        """The answer already given to the invocation that ``environ`` retries, or None (a first
        attempt, a request without an invocation id, or one whose first answer was not kept)."""
        invocation = str(environ.get("HTTP_AMZ_SDK_INVOCATION_ID") or "")
        attempt = str(environ.get("HTTP_AMZ_SDK_REQUEST") or "attempt=1;")
        if not invocation or attempt.startswith("attempt=1;"):
            return None
        with self._lock:
            return self._answers.get(invocation)

    def answer(
        self, app: Any, environ: dict[str, Any], start_response: Any, *, writes: bool
    ) -> tuple[list[bytes], bool]:
        """``app``'s answer to ``environ``, or, for a retry of a write whose answer was lost, that
        answer again; and whether it was given again. Call it under the lock that serializes ``app``
        (the check and the call must be one step), with the body read already (:func:`buffer_body`)."""
        lost = self.lost(environ) if writes else None
        if lost is not None:
            return replay(lost, start_response), True
        return [self.call(app, environ, start_response, writes=writes)], False

    def call(self, app: Any, environ: dict[str, Any], start_response: Any, *, writes: bool) -> bytes:
        """``app``'s whole answer to ``environ`` (its iterable closed), kept when ``writes``."""
        answered: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            answered[:] = [status, headers]
            return start_response(status, headers, *exc_info)

        result = app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if writes and answered:
            self.keep(environ, answered[0], answered[1], body)
        return body

    def keep(self, environ: dict[str, Any], status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Keep the answer to a write, if it succeeded and the request names its invocation."""
        invocation = str(environ.get("HTTP_AMZ_SDK_INVOCATION_ID") or "")
        if not invocation or not status.startswith("2"):
            return
        with self._lock:
            self._answers[invocation] = Answer(status, list(headers), body)
            while len(self._answers) > self._keep:
                self._answers.popitem(last=False)


def replay(answer: Answer, start_response: Any) -> list[bytes]:
    """Give ``answer`` again. The retry's body was read already (:func:`buffer_body`), so the
    connection stays in step, and it stays readable for whoever logs the call."""
    start_response(answer.status, answer.headers)
    return [answer.body]


def buffer_body(environ: dict[str, Any]) -> None:
    """Read the whole request body now, before the lock that serializes the app. Read under it (by
    moto), a client that stops between its headers and its body (botocore sends them apart; a
    SIGSTOPped or dead process) held the lock, and every other request waited on it for good."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length > 0:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream at its end
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read())


class OneAtATime:
    """A WSGI app (moto's) served one request at a time, since moto's models are not thread-safe,
    with every request but a GET or HEAD counted as a write whose lost answer is given again.

    For servers of moto without the sandbox (the test suite's and the aws path's stand-ins); the
    sandbox's own API tells writes apart more finely and saves after them."""

    def __init__(self, app: Any, on_replay: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._app = app
        self._on_replay = on_replay
        self._lock = threading.Lock()
        self._answers = Answers()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        buffer_body(environ)
        writes = environ.get("REQUEST_METHOD") not in ("GET", "HEAD")
        with self._lock:
            body, replayed = self._answers.answer(self._app, environ, start_response, writes=writes)
        if replayed and self._on_replay is not None:
            self._on_replay(environ)
        return body
