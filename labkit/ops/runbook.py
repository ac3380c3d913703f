"""The runbook kit: what every runbook in ``runbooks/`` calls, section by section.

A runbook's guard cell opens the run with :func:`open_runbook`; then

- **Diagnose**: :meth:`Runbook.diagnose` runs a read-only check in every mode and records it;
- **Plan**: :meth:`Runbook.plan` takes the :class:`Action` list the diagnosis calls for. An empty
  list means nothing to do (a second run after recovery says so and changes nothing). Acting needs
  ``confirm`` equal to the environment's name; without it the run is recorded as *refused* and
  :class:`~labkit.errors.ConfirmationRequiredError` names the parameter to set. On ``production``
  even an action that changes nothing but a lock needs it;
- **Act**: :meth:`Runbook.act` runs the planned actions as timed steps; a dry run only prints what
  each would do;
- **Verify**: :meth:`Runbook.verify` runs a check that must hold once the environment is fine;
  :meth:`Runbook.finish` records the outcome and raises :class:`~labkit.errors.RunbookFailedError`
  when a check failed, so a headless run (papermill) fails too.

Every step is written to the run's audit record (:mod:`labkit.ops.audit`) as it ends. Nothing here
asks for input: a runbook runs the same in JupyterLab, under papermill and in CI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from labkit.deploy.ledger import default_owner
from labkit.errors import ConfigError, ConfirmationRequiredError, RunbookError, RunbookFailedError
from labkit.infra.stack import ENVIRONMENTS, Stack, StackNames, is_environment
from labkit.lab.lesson import check_flag, open_target
from labkit.ops.audit import (
    AuditLog,
    Outcome,
    RunRecord,
    Section,
    StepOutcome,
    StepRecord,
    new_run_id,
    now_iso,
)
from labkit.settings import PROJECT_ROOT
from labkit.target import Target

T = TypeVar("T")

#: Set by :func:`labkit.ops.execute.run_runbook` for the kernel: the run id to record under, and
#: where papermill writes the executed copy.
RUN_ID_ENV = "LABKIT_RUNBOOK_RUN_ID"
EXECUTED_COPY_ENV = "LABKIT_RUNBOOK_COPY"

#: Environments whose every action needs ``confirm``, even one that changes only a lock.
PROTECTED = frozenset({"production"})


def runbooks_dir() -> Path:
    """``runbooks/`` at the project root."""
    return PROJECT_ROOT / "runbooks"


@dataclass(frozen=True)
class Action:
    """One change a runbook plans: what it does, in words, and the call that does it.

    ``lock_only``: it changes nothing but a lock (a force-unlock), which on staging needs no
    ``confirm``; on production every action does.
    """

    description: str
    run: Callable[[], object] = field(repr=False)
    lock_only: bool = False


class Runbook:
    """One run of a runbook, opened by :func:`open_runbook`."""

    def __init__(
        self, record: RunRecord, target: Target, *, confirm: str, audit: AuditLog, say: Callable[[str], None]
    ) -> None:
        self.record = record
        self.target = target
        self.environment = record.environment
        self.dry_run = record.dry_run
        self.confirm = confirm
        self.stack = Stack(record.environment, target)
        self._audit = audit
        self._say = say
        self._planned: list[Action] | None = None
        self._checks_failed: list[str] = []

    # -- sections ---------------------------------------------------------------------------

    def diagnose(self, what: str, check: Callable[[], T]) -> T:
        """Run a read-only check (in a dry run too), print and record it, return its value."""
        self._say(f"checking: {what}")
        value = self._step("diagnose", what, check)
        if value is not None:
            self._say(f"  {value}")
        return value

    def plan(self, actions: list[Action], *, nothing_to_do: str) -> list[Action]:
        """Record and print what the run will do; refuse (recorded) when acting needs ``confirm``."""
        if self._planned is not None:
            raise RunbookError("plan() was called twice in one run.", hint="Plan every action in one call.")
        started, t0 = now_iso(), time.monotonic()
        self._planned = list(actions)
        if not actions:
            self._say(f"Nothing to do: {nothing_to_do}")
            self._record_step("plan", "nothing to do", "ok", started, t0, nothing_to_do)
            return self._planned
        self.record.detected_at = self.record.detected_at or now_iso()
        lines = [f"{n}. {action.description}" for n, action in enumerate(actions, 1)]
        self._say(("Would do (dry run):" if self.dry_run else "Will do:") + "\n  " + "\n  ".join(lines))
        self._record_step("plan", f"{len(actions)} action(s)", "ok", started, t0, "; ".join(lines))
        if not self.dry_run and self._needs_confirm(actions) and self.confirm != self.environment:
            given = f"confirm={self.confirm!r}" if self.confirm else "no confirm"
            self._end("refused", f"refused to act on {self.environment} with {given}")
            raise ConfirmationRequiredError(
                f"This run would change {self.environment} ({len(actions)} action(s) above) but was given "
                f"{given}.",
                hint=f"Review the plan, then set the parameter confirm to {self.environment!r} "
                f"(papermill: -p confirm {self.environment}); or run with dry_run=True to only list it.",
            )
        return self._planned

    def act(self) -> None:
        """Run each planned action as a timed step; a dry run prints what it would do."""
        if self._planned is None:
            raise RunbookError("act() before plan().", hint="Call rb.plan([...]) in the Plan section first.")
        if not self._planned:
            self._say("Nothing to do.")
            return
        for action in self._planned:
            if self.dry_run:
                self._say(f"would: {action.description}")
                self._record_step("act", action.description, "would", now_iso(), time.monotonic())
            else:
                self._say(f"doing: {action.description}")
                self._step("act", action.description, action.run)

    def verify(self, what: str, check: Callable[[], bool | tuple[bool, str]]) -> bool:
        """Run a check that holds once the environment is fine; record it. Skipped in a dry run
        that planned actions (nothing was changed, so it would only restate the diagnosis)."""
        if self.dry_run and self._planned:
            self._say(f"skipped (dry run): {what}")
            self._record_step("verify", what, "skipped", now_iso(), time.monotonic())
            return False
        started, t0 = now_iso(), time.monotonic()
        try:
            result = check()
        except Exception as exc:
            self._record_step("verify", what, "error", started, t0, f"{type(exc).__name__}: {exc}")
            self._end("failed", f"verify check raised: {what}")
            raise
        ok, detail = result if isinstance(result, tuple) else (bool(result), "")
        self._say(f"{'ok' if ok else 'FAILED'}: {what}" + (f" ({detail})" if detail else ""))
        self._record_step("verify", what, "ok" if ok else "failed", started, t0, detail)
        if not ok:
            self._checks_failed.append(what)
        return ok

    def finish(self) -> RunRecord:
        """Record the run's outcome and print it; raise when a Verify check failed."""
        if self._planned is None:
            raise RunbookError("finish() before plan().", hint="A runbook plans before it finishes.")
        if self._checks_failed:
            self._end("failed", "not verified: " + "; ".join(self._checks_failed))
            raise RunbookFailedError(
                f"{self.record.runbook} acted on {self.environment} but these checks failed: "
                + "; ".join(self._checks_failed)
                + ".",
                hint="Read the Verify section's output; `labkit ledger --runbooks` has the run's steps.",
            )
        if self.dry_run and self._planned:
            self._end("planned", f"dry run: {len(self._planned)} action(s) listed, nothing changed")
        elif self._planned:
            self._end("recovered", f"{len(self._planned)} action(s) done and verified")
        else:
            self._end("nothing-to-do", "nothing to do; verified")
        self._say(
            f"{self.record.runbook}: {self.record.outcome} ({self.record.summary}); run {self.record.run_id}"
        )
        return self.record

    # -- internals --------------------------------------------------------------------------

    def _needs_confirm(self, actions: list[Action]) -> bool:
        return self.environment in PROTECTED or any(not action.lock_only for action in actions)

    def _step(self, section: Section, name: str, call: Callable[[], T]) -> T:
        started, t0 = now_iso(), time.monotonic()
        try:
            value = call()
        except Exception as exc:
            self._record_step(section, name, "error", started, t0, f"{type(exc).__name__}: {exc}")
            self._end("failed", f"{section} step failed: {name}")
            raise
        self._record_step(section, name, "ok", started, t0, _short(value))
        return value

    def _record_step(
        self, section: Section, name: str, outcome: StepOutcome, started: str, t0: float, detail: str = ""
    ) -> None:
        step = StepRecord(section, name, outcome, started, round(time.monotonic() - t0, 3), detail)
        self.record.steps.append(step)
        self._audit.write(self.record)

    def _end(self, outcome: Outcome, summary: str) -> None:
        self.record.outcome = outcome
        self.record.summary = summary
        self.record.finished_at = now_iso()
        self._audit.write(self.record)


def open_runbook(
    name: str,
    *,
    target: str,
    environment: str,
    dry_run: bool,
    confirm: str,
    parameters: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> Runbook:
    """The guard cell: check the standard parameters, open the target (starting the sandbox when it
    is the target) and the run's audit record; return the :class:`Runbook` the later cells use."""
    if not is_environment(environment):
        raise ConfigError(
            f"environment is {environment!r}.",
            hint=f"Set environment to one of: {', '.join(ENVIRONMENTS)} (papermill: -p environment staging).",
        )
    check_flag("dry_run", dry_run)
    if not isinstance(confirm, str):
        raise ConfigError(
            f"confirm is {confirm!r}.", hint=f"Give the environment's name as text: {environment!r}."
        )
    chosen = open_target(target)
    audit = AuditLog(chosen, StackNames.for_target(chosen).ledger_table)
    record = RunRecord(
        run_id=os.environ.get(RUN_ID_ENV) or new_run_id(name),
        runbook=name,
        environment=environment,
        target=chosen.name,
        region=chosen.region,
        who=default_owner(),
        parameters={"environment": environment, "dry_run": dry_run, "confirm": confirm, **(parameters or {})},
        dry_run=dry_run,
        started_at=now_iso(),
        executed_copy=os.environ.get(EXECUTED_COPY_ENV),
    )
    audit.write(record)
    mode = "DRY RUN: nothing will change" if dry_run else "acting (confirm checked at the Plan step)"
    say(f"runbook {name} on {environment} ({mode}); run {record.run_id}")
    return Runbook(record, chosen, confirm=confirm, audit=audit, say=say)


def _short(value: object, limit: int = 300) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
