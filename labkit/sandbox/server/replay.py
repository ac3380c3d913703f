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

import threading
from collections import OrderedDict
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


def replay(answer: Answer, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer ``environ`` with ``answer``, reading its body first so the connection stays in step."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    elif environ.get("wsgi.input_terminated"):
        environ["wsgi.input"].read()
    start_response(answer.status, answer.headers)
    return [answer.body]
