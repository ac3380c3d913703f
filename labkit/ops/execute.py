"""The runbooks in ``runbooks/`` and how one runs headless: ``labkit runbook list|run``.

A run executes the notebook with papermill (:func:`labkit.lab.run.run_notebooks`) into
``runs/runbooks/<run id>/``, with the run id and the executed copy's path handed to the kernel, so
the audit record names both. Its result is read back from that record: the Verify section decides
whether the run recovered the environment, not whether papermill happened to finish.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import NotebookRunError, RunbookError
from labkit.infra.stack import StackNames
from labkit.lab.run import DEFAULT_CELL_TIMEOUT_S, declared_parameters, runs_root
from labkit.ops.audit import AuditLog, RunRecord, new_run_id
from labkit.ops.runbook import EXECUTED_COPY_ENV, RUN_ID_ENV, runbooks_dir
from labkit.target import SANDBOX_IDENTITY_ENV, Target, credentials_to_env

#: The parameters every runbook declares (see :func:`labkit.ops.runbook.open_runbook`).
STANDARD_PARAMETERS = ("target", "environment", "dry_run", "confirm")


@dataclass(frozen=True)
class RunbookInfo:
    """A runbook as ``labkit runbook list`` shows it."""

    name: str
    path: Path
    fixes: str
    parameters: dict[str, str]  # name -> default, as written in its parameters cell


def catalog(folder: Path | None = None, *, parameters: bool = True) -> list[RunbookInfo]:
    """Every runbook in ``runbooks/`` (or ``folder``), by name; ``parameters=False`` leaves their
    parameters empty and spares papermill's inspection (seconds), for a list that shows none."""
    folder = folder or runbooks_dir()
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        inspected = _inspect(path) if parameters else {}
        declared = {name: str(spec.get("default")) for name, spec in inspected.items()}
        found.append(RunbookInfo(path.stem, path, _fixes(path), declared))
    return found


def _inspect(path: Path) -> dict[str, Any]:
    import papermill

    inspected: dict[str, Any] = papermill.inspect_notebook(str(path))
    return inspected


def find(name: str, folder: Path | None = None) -> RunbookInfo:
    """The runbook called ``name``; RunbookError listing the runbooks there are otherwise."""
    runbooks = catalog(folder)
    for info in runbooks:
        if info.name == name:
            return info
    raise RunbookError(
        f"There is no runbook {name!r}.",
        hint=f"Runbooks: {', '.join(r.name for r in runbooks) or 'none'} (`labkit runbook list`).",
    )


@dataclass(frozen=True)
class RunbookRun:
    """One headless run: its audit record and the executed copy."""

    record: RunRecord
    executed: Path
    error: NotebookRunError | None  # the cell that failed, when one did

    @property
    def ok(self) -> bool:
        """Recovered, nothing to do, or a dry run that listed its plan."""
        return self.error is None and self.record.outcome in ("recovered", "nothing-to-do", "planned")


def run_runbook(
    name: str,
    target: Target,
    parameters: Mapping[str, Any],
    *,
    out_root: Path | None = None,
    folder: Path | None = None,
    timeout: float | None = DEFAULT_CELL_TIMEOUT_S,
    reporter: Callable[[str], None] = print,
) -> RunbookRun:
    """Run runbook ``name`` on ``target`` with papermill; the run's record says how it ended.

    ``parameters`` are the runbook's (``environment``, ``dry_run``, ``confirm`` and its own);
    ``target`` is passed as the ``target`` parameter, and a sandbox target's identity (a role's
    credentials, :meth:`~labkit.target.Target.as_identity`) goes with it: the runbook calls as it.
    A parameter the runbook does not declare is refused before anything runs. ``folder`` holds the
    runbooks (default: ``runbooks/``).
    """
    from labkit.lab.run import run_notebooks

    info = find(name, folder)
    declared = declared_parameters(info.path)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise RunbookError(
            f"Runbook {name} has no parameter {', '.join(unknown)}.",
            hint=f"Its parameters: {', '.join(sorted(declared))} (`labkit runbook list`).",
        )
    run_id = new_run_id(name)
    out_dir = (out_root or runs_root() / "runbooks") / run_id
    executed = out_dir / info.path.name
    error: NotebookRunError | None = None
    run_env = {RUN_ID_ENV: run_id, EXECUTED_COPY_ENV: str(executed)}
    if target.is_sandbox and target.credentials is not None:  # the kernel calls as that identity too
        run_env[SANDBOX_IDENTITY_ENV] = credentials_to_env(target.credentials)
    with _environ(run_env):
        try:
            run_notebooks(
                info.path,
                {**parameters, "target": target.name},
                out_dir=out_dir,
                timeout=timeout,
                reporter=reporter,
            )
        except NotebookRunError as exc:
            error = exc
    audit = AuditLog(target, StackNames.for_target(target).ledger_table)
    try:
        record = audit.get(run_id)
    except RunbookError:
        if error is not None:  # it failed before its guard cell opened the run
            raise error from None
        raise
    (out_dir / "record.json").write_text(json.dumps(record.to_json(), indent=2, default=str) + "\n")
    return RunbookRun(record=record, executed=executed, error=error)


def _fixes(path: Path) -> str:
    """The ``**Fixes:**`` line of the runbook's first cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = "".join(cells[0]["source"]) if cells else ""
    for line in source.splitlines():
        if line.startswith("**Fixes:**"):
            return line.removeprefix("**Fixes:**").strip()
    return ""


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
