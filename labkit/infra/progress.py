"""One live line per Terraform command, a summary line at its end, and the full log in a file.

Terraform's machine-readable UI (``plan -json``, ``apply -json``) sends one message per resource
and step. :class:`CommandProgress` counts resources from those messages: what the plan said it
would change (``planned_change``), what the apply finished (``apply_complete``, ``apply_errored``),
what it is working on now (``apply_start``). Its :meth:`~CommandProgress.status` is the live line,
e.g. ``terraform apply staging: 23/41 resources, 37 s — creating aws_lb.this``.

:class:`PrintReporter` (:data:`print_reporter`, the runner's default) shows that line updating in
place: an updating display in a Jupyter kernel (JupyterLab, and papermill's executed copy, which
keeps its last state), a carriage-return line in a terminal, a line every
:data:`PLAIN_EVERY_S` seconds elsewhere (a CI log). A plain callable reporter gets the
resource-by-resource lines instead.

:class:`CommandLog` writes every message of a command, as text, to a file in :func:`logs_dir`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

from labkit.settings import RUN_DIR_ENV, labkit_home

#: Outside a terminal and a notebook (a CI log), how often the live line is printed as a line.
PLAIN_EVERY_S = 30.0
#: How often, at most, a notebook's display is updated (each update is a message to the front end).
DISPLAY_EVERY_S = 0.5

#: ``apply_start`` hook actions as the live line says them.
_DOING = {
    "create": "creating",
    "update": "updating",
    "delete": "destroying",
    "read": "reading",
    "refresh": "refreshing",
}
#: Planned actions that the apply works on, with the number of hooks each takes: a replace is a
#: delete and a create of the same address.
_HOOKS = {"create": 1, "update": 1, "delete": 1, "read": 1, "replace": 2}


def logs_dir() -> Path:
    """Where command logs go: ``logs/`` in the folder of the current ``labkit run``
    (``LABKIT_RUN_DIR``), else ``logs/`` in :func:`labkit.settings.labkit_home`."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    folder = (Path(run_dir) if run_dir else labkit_home()) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class CommandProgress:
    """What one Terraform command has done so far, counted from its ``-json`` messages."""

    command: str  # "plan", "apply", "destroy", "init"
    root: str  # the root module's folder name, e.g. "staging"
    #: Address -> hooks still to finish, for every resource the plan said the apply changes.
    pending: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    #: Resources the plan said the apply changes (none listed by a saved plan's apply).
    planned: int = 0
    #: Address -> what is being done to it, in the order started.
    running: dict[str, str] = field(default_factory=dict)
    #: The last ``change_summary`` counts (add, change, remove), the apply's when there is one.
    changes: dict[str, int] = field(default_factory=dict)
    #: The last plain-text line (``init``'s output is text).
    last_text: str = ""

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "planned_change":
            change = event.get("change") or {}
            hooks = _HOOKS.get(str(change.get("action")), 0)
            address = str((change.get("resource") or {}).get("addr", ""))
            if hooks and address and address not in self.pending:
                if not self.planned:
                    # Data sources read while planning completed before this first planned
                    # change: with a plan to count against, they are not resources done.
                    self.pending = {a: n for a, n in self.pending.items() if a not in self.finished}
                    self.finished.clear()
                self.pending[address] = hooks
                self.planned += 1
        elif kind in ("refresh_start", "refresh_complete"):
            address = str(((event.get("hook") or {}).get("resource") or {}).get("addr", ""))
            if kind == "refresh_start":
                self.running[address] = "refresh"
            else:
                self.running.pop(address, None)
        elif kind in ("apply_start", "apply_complete", "apply_errored"):
            hook = event.get("hook") or {}
            address = str((hook.get("resource") or {}).get("addr", ""))
            if kind == "apply_start":
                self.running[address] = str(hook.get("action", ""))
            else:
                self.running.pop(address, None)
                if self.planned and address not in self.pending:
                    return  # not a planned change: a data source read during the apply
                # A saved plan's apply has no planned_change messages: each address counts once.
                left = self.pending.get(address, 1) - 1
                self.pending[address] = left
                if left <= 0:
                    self.finished.add(address)
        elif kind == "change_summary":
            counts = event.get("changes") or {}
            self.changes = {key: int(counts.get(key, 0)) for key in ("add", "change", "remove")}
        elif kind == "text":
            self.last_text = str(event.get("@message", "")).strip() or self.last_text

    @property
    def title(self) -> str:
        return f"terraform {self.command} {self.root}"

    @property
    def done(self) -> int:
        return len(self.finished)

    @property
    def total(self) -> int:
        return self.planned

    def status(self, seconds: float) -> str:
        """The live line: ``terraform apply staging: 23/41 resources, 37 s — creating aws_lb.this``."""
        if self.running:
            address, action = next(reversed(self.running.items()))
            doing = f"{_DOING.get(action, action)} {address}"
            if len(self.running) > 1:
                doing += f" (+{len(self.running) - 1} more)"
        elif self.command == "init":
            doing = self.last_text
        elif self.command in ("apply", "destroy") and not (self.total or self.done or self.changes):
            doing = "planning"
        else:
            doing = ""
        if self.command in ("apply", "destroy") and self.total:
            counted = f"{self.done}/{self.total} resources, "
        elif self.command in ("apply", "destroy") and self.done:
            counted = f"{self.done} resource{'' if self.done == 1 else 's'} done, "
        elif self.command == "plan" and self.total:
            counted = f"{self.total} to change, "
        else:
            counted = ""
        line = f"{self.title}: {counted}{seconds:.0f} s"
        return f"{line} — {doing}" if doing else line

    def counts(self) -> str:
        """``41 added, 0 changed, 0 destroyed``, from Terraform's own summary."""
        c = self.changes
        return f"{c.get('add', 0)} added, {c.get('change', 0)} changed, {c.get('remove', 0)} destroyed"

    def failure(self, seconds: float, log: Path, verb: str) -> str:
        """The closing line of a command that ``verb`` ("failed", "stopped") after ``seconds``."""
        done = f" ({self.done}/{self.total} resources done)" if self.total else ""
        return f"{self.title} {verb} after {seconds:.0f} s{done}; full log: {log}"


class LiveLine(Protocol):
    """Where the live line shows: updated in place, and lines printed around it."""

    def update(self, text: str) -> None: ...

    def print(self, text: str) -> None: ...

    def close(self) -> None: ...


class _NotebookLine:
    """An IPython display updated in place (``display_id``); closed, it is emptied, so the cell
    keeps the summary line printed after it and not a stale status. Updates are throttled."""

    def __init__(self) -> None:
        self._handle: Any = None  # IPython's DisplayHandle, made by the first update
        self._shown = ""
        self._at = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if text == self._shown or now - self._at < DISPLAY_EVERY_S:
            return
        if self._handle is None:
            from IPython.display import display

            self._handle = display(  # type: ignore[no-untyped-call]  # IPython ships no annotations here
                {"text/plain": text}, raw=True, display_id=True
            )
        else:
            self._handle.update({"text/plain": text}, raw=True)
        self._shown, self._at = text, now

    def print(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        if self._handle is not None and self._shown:
            self._handle.update({"text/plain": ""}, raw=True)


class _TerminalLine:
    """A carriage-return line in a terminal, cut to its width so it never wraps."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._shown = ""

    def update(self, text: str) -> None:
        width = shutil.get_terminal_size().columns - 1
        text = text if len(text) <= width else text[: max(width - 1, 0)] + "…"
        if text != self._shown:
            self._stream.write(f"\r\x1b[K{text}")
            self._stream.flush()
            self._shown = text

    def print(self, text: str) -> None:
        self._stream.write(f"\r\x1b[K{text}\n")
        if self._shown:
            self._stream.write(self._shown)
        self._stream.flush()

    def close(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = ""


class _PlainLine:
    """No updating in place (a CI log, a pipe): the live line every :data:`PLAIN_EVERY_S`
    seconds, so a long apply still shows it is alive."""

    def __init__(self) -> None:
        self._next = time.monotonic() + PLAIN_EVERY_S

    def update(self, text: str) -> None:
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + PLAIN_EVERY_S
            print(text, flush=True)

    def print(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (JupyterLab's, or papermill's)."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


class PrintReporter:
    """The default progress sink. Called with a line, it prints it; for a Terraform command it
    gives a :meth:`live` line, which the runner keeps updating instead of printing a line per
    resource. Lines printed while a live line shows go around it."""

    def __init__(self) -> None:
        self._live: LiveLine | None = None

    def __call__(self, line: str) -> None:
        if self._live is not None:
            self._live.print(line)
        else:
            print(line, flush=True)

    def live(self) -> LiveLine:
        """A new live line, suited to where the output goes; :meth:`end` it when done."""
        if _in_kernel():
            self._live = _NotebookLine()
        elif sys.stdout.isatty():
            self._live = _TerminalLine(sys.stdout)
        else:
            self._live = _PlainLine()
        return self._live

    def end(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None


#: The default reporter of :class:`~labkit.infra.terraform.Terraform` and
#: :class:`~labkit.infra.stack.Stack`.
print_reporter = PrintReporter()


#: Command logs a folder keeps: every deploy step writes one, so the oldest go.
KEEP_LOGS = 500


def _prune(folder: Path) -> None:
    """Delete the oldest command logs beyond :data:`KEEP_LOGS` (their names start with the time)."""
    logs = sorted(folder.glob("*.log"))
    for old in logs[: max(0, len(logs) - KEEP_LOGS + 1)]:
        old.unlink(missing_ok=True)


class CommandLog:
    """The full text of one Terraform command in a file of :func:`logs_dir`, written as it runs
    (a command that never ends still leaves what it said)."""

    def __init__(self, command: str, root: str, args: list[str]) -> None:
        folder = logs_dir()
        _prune(folder)
        stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{root}-{command}"
        for n in range(1, 1000):
            self.path = folder / (f"{stem}.log" if n == 1 else f"{stem}-{n}.log")
            try:
                self._file = self.path.open("x", encoding="utf-8")
                break
            except FileExistsError:
                continue
        self._file.write(f"$ terraform {' '.join(args)}\n")
        self._file.flush()

    def write(self, text: str) -> None:
        self._file.write(text if text.endswith("\n") else text + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CommandLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
