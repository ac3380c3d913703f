"""Run notebooks headless with papermill: ``labkit run`` and the notebook tests use this.

- A path is one ``.ipynb`` or a folder, whose notebooks run in the learning path's order
  (:data:`labkit.lab.lesson.PATH_ORDER`: 00 to 08, then 10 and 11 on the stack 08 left, 09's
  teardown, 12; other notebooks by name) and stop at the first failure, because each lesson builds
  on the ones before it.
- Parameters are injected after the cell tagged ``parameters``. A parameter must be declared in that cell
  (a typo such as ``taget`` would otherwise be injected and ignored); in a folder run each notebook gets
  the parameters it declares, and each parameter must be declared by at least one notebook.
- Each cell may run for ``timeout`` seconds (papermill's ``execution_timeout``).
- The executed copies go to ``runs/<timestamp>/`` at the project root (git-ignored) unless ``out_dir``
  is given. While a run lasts, ``LABKIT_RUN_DIR`` names that folder, so a notebook saves its plots next to
  its executed copy with :func:`artifacts_dir`, and Terraform's command logs go to its ``logs/``.
- Each notebook runs in its own folder (as JupyterLab does) on the project's named kernel
  (:data:`KERNEL_NAME`, registered in this venv by ``make setup``), which runs the interpreter running
  labkit, so the kernel sees the same venv and the same labkit.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, NotebookRunError
from labkit.lab.check import KERNEL_DISPLAY_NAME, KERNEL_NAME, cell_source
from labkit.lab.lesson import in_path_order
from labkit.settings import PROJECT_ROOT, RUN_DIR_ENV

#: The default per-cell time limit, in seconds. Terraform applies of the ALB take about a minute.
DEFAULT_CELL_TIMEOUT_S = 900.0


def runs_root() -> Path:
    """``runs/`` at the project root, where executed copies go (git-ignored)."""
    return PROJECT_ROOT / "runs"


def artifacts_dir() -> Path:
    """Where a notebook saves its figures: the current ``labkit run`` folder, else ``runs/interactive/``."""
    folder = Path(os.environ.get(RUN_DIR_ENV) or runs_root() / "interactive")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def parse_value(text: str) -> Any:
    """A ``-p name value`` value: JSON when it parses (``3``, ``true``, ``[1, 2]``, ``"x"``), papermill's
    ``True``/``False``/``None`` spellings, else the text itself as a string."""
    python_literals: dict[str, Any] = {"True": True, "False": False, "None": None}
    if text in python_literals:
        return python_literals[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def collect_notebooks(path: Path) -> list[Path]:
    """The notebook at ``path``, or the notebooks directly inside the folder ``path``, in the
    learning path's order (:data:`labkit.lab.lesson.PATH_ORDER`; other notebooks by name)."""
    if path.is_file():
        if path.suffix != ".ipynb":
            raise ConfigError(f"{path} is not a notebook (.ipynb).", hint="Give a .ipynb file or a folder.")
        return [path]
    if path.is_dir():
        found = in_path_order([p for p in path.glob("*.ipynb") if p.is_file()])
        if not found:
            raise ConfigError(f"{path} holds no .ipynb notebooks.", hint="Check the path.")
        return found
    raise ConfigError(f"{path} does not exist.", hint="Give a notebook or a folder of notebooks.")


def declared_parameters(notebook: Path) -> set[str]:
    """The names assigned in the notebook's ``parameters`` cell (as papermill infers them)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def _parameters_for(
    notebooks: list[Path], parameters: Mapping[str, Any]
) -> dict[Path, dict[str, Any]]:
    """Each notebook's share of the parameters; raises when one is declared nowhere it should be."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    if len(notebooks) == 1:
        unknown = sorted(set(parameters) - declared[notebooks[0]])
        where = f"{notebooks[0]} does not declare"
    else:
        unknown = sorted(name for name in parameters if not any(name in d for d in declared.values()))
        where = "no notebook in the folder declares"
    if unknown:
        known = sorted(set().union(*declared.values()))
        raise ConfigError(
            f"{where} parameter(s) {', '.join(unknown)}.",
            hint=f"Declared parameters: {', '.join(known) or 'none'}. Check the spelling, or add it to the "
            "notebook's parameters cell.",
        )
    return {nb: {k: v for k, v in parameters.items() if k in declared[nb]} for nb in notebooks}


def new_run_dir(root: Path | None = None) -> Path:
    """A new, empty ``runs/<YYYYmmdd-HHMMSS>`` folder (suffixed ``-2``, ``-3`` ... on a clash)."""
    root = root or runs_root()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"Could not create a new run folder under {root}.", hint="Clean up old runs.")


def ensure_kernel() -> str:
    """The project's kernel, checked to run this interpreter (registered in this venv if missing)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix)
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    if not runs_this_interpreter(spec.argv):
        raise ConfigError(
            f"The '{KERNEL_NAME}' Jupyter kernel at {spec.resource_dir} runs {spec.argv[:1]}, "
            f"not this interpreter ({sys.executable}).",
            hint=f"Register this venv's kernel: {sys.executable} -m ipykernel install --sys-prefix "
            f"--name {KERNEL_NAME} --display-name '{KERNEL_DISPLAY_NAME}', or remove the other "
            "kernelspec folder.",
        )
    return KERNEL_NAME


def runs_this_interpreter(argv: list[str]) -> bool:
    """Whether a kernelspec's command line starts this interpreter."""
    command = argv[0] if argv else ""
    # jupyter_client swaps a bare "python"/"python3"/"python3.X" for sys.executable.
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return command in bare or (
        Path(command).exists() and Path(command).resolve() == Path(sys.executable).resolve()
    )


@dataclass(frozen=True)
class CellFailure:
    """The cell a notebook stopped at, numbered as in the source notebook (0 = first cell)."""

    cell_index: int | None  # None: the kernel failed before any cell ran
    first_line: str
    ename: str
    evalue: str
    traceback: str = ""  # the cell's traceback as plain text (colours stripped)

    def __str__(self) -> str:
        error = f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        if self.cell_index is None:
            return f"kernel start: {error}"
        return f"cell {self.cell_index} ({self.first_line!r}): {error}"


@dataclass(frozen=True)
class NotebookResult:
    """One notebook's run: where its executed copy is, how long it took, where it failed."""

    source: Path
    executed: Path
    seconds: float
    parameters: dict[str, Any]
    failure: CellFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class RunReport:
    """The result of ``labkit run``: one entry per notebook run, and the ones not run after a failure."""

    out_dir: Path
    results: list[NotebookResult] = field(default_factory=list)
    not_run: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results) and not self.not_run

    @property
    def failed(self) -> NotebookResult | None:
        return next((r for r in self.results if not r.ok), None)

    def summary(self) -> str:
        """A table of notebooks with status and wall time, then the run folder and total time."""
        width = max((len(r.source.name) for r in self.results), default=10)
        width = max([width, *(len(p.name) for p in self.not_run)])
        lines = [f"{'notebook':<{width}}  status   wall time"]
        for r in self.results:
            lines.append(f"{r.source.name:<{width}}  {'ok' if r.ok else 'FAILED':<7}  {r.seconds:8.1f} s")
        for p in self.not_run:
            lines.append(f"{p.name:<{width}}  not run")
        lines.append(f"executed copies: {self.out_dir}")
        figures = sorted(p.name for p in self.out_dir.glob("*.png"))
        if figures:
            lines.append(f"figures ({len(figures)} PNG, same folder): {', '.join(figures)}")
        lines.append(f"total wall time: {self.seconds:.1f} s")
        return "\n".join(lines)


def _cells(notebook: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return cells


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:80]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failure(source_nb: Path, executed_nb: Path, error: BaseException) -> CellFailure:
    """Find the failing cell in the executed copy and number it as in the source notebook.

    papermill adds cells (the injected parameters, error banners), so the executed index is mapped back
    by cell id. A cell error marks its cell ``papermill.exception``; a timeout stops the run inside the
    last cell that started.
    """
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        ename, evalue = str(error.ename), str(error.evalue)
        traceback = _ANSI.sub("", "\n".join(error.traceback))
    else:  # a timeout or a dead kernel: the exception's own message says what happened
        ename, evalue, traceback = type(error).__name__, _first_line(str(error)), ""
    if not executed_nb.exists():
        return CellFailure(None, "", ename, evalue, traceback)
    source_cells = _cells(source_nb)
    executed_cells = _cells(executed_nb)
    meta = [c.get("metadata", {}).get("papermill", {}) for c in executed_cells]
    failing = next((i for i, m in enumerate(meta) if m.get("exception") is True), None)
    if failing is None:
        started = [i for i, m in enumerate(meta) if m.get("start_time")]
        failing = started[-1] if started else 0
    cell = executed_cells[failing]
    ids = [c.get("id") for c in source_cells]
    if cell.get("id") and cell.get("id") in ids:
        index = ids.index(cell.get("id"))
    else:  # notebooks without cell ids (nbformat < 4.5): skip the cells papermill added
        index = sum(1 for c in executed_cells[:failing] if not _added_by_papermill(c))
    return CellFailure(index, _first_line(cell_source(cell)), ename, evalue, traceback)


#: Cells papermill adds to the executed copy.
_ADDED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _added_by_papermill(cell: dict[str, Any]) -> bool:
    return bool(_ADDED_TAGS & set(cell.get("metadata", {}).get("tags", [])))


def lesson_result(result: NotebookResult, out_dir: Path) -> dict[str, Any]:
    """What one notebook's run proved and drew, as ``labkit run`` writes it beside the executed copy
    (``NAME.result.json``) for the report and CI to read.

    Its status, wall time and parameters; each **checkpoint** (a code cell whose first statement is
    an ``assert``, the lessons' way of checking a step) with its place in the source notebook and whether
    it ``passed``, ``failed`` or was ``not run``; each **figure** it showed (the title it carries as
    text) and the PNGs in the run folder named with the notebook's number (``07-*.png``).
    """
    cells = _cells(result.executed) if result.executed.exists() else []
    own = [c for c in cells if not _added_by_papermill(c)]
    checkpoints, figures = [], []
    for index, cell in enumerate(own):
        if cell.get("cell_type") != "code":
            continue
        source = cell_source(cell)
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        check = _checkpoint(source)
        if check is not None:
            state = {"completed": "passed", "failed": "failed"}.get(str(status), "not run")
            checkpoints.append({"cell": index, "check": check, "status": state})
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                title = "".join(data.get("text/plain", "")).strip().strip("<>")
                figures.append({"cell": index, "title": title})
    number = result.source.stem.split("-", 1)[0]
    pngs = sorted(p.name for p in out_dir.glob(f"{number}-*.png")) if number.isdigit() else []
    return {
        "notebook": result.source.name,
        "executed": result.executed.name,
        "ok": result.ok,
        "seconds": round(result.seconds, 1),
        "parameters": result.parameters,
        "failure": None if result.failure is None else str(result.failure),
        "checkpoints": checkpoints,
        "figures": figures,
        "pngs": pngs,
    }


def _checkpoint(source: str) -> str | None:
    """The cell's check (its first statement, cut at 80 characters) when that is an ``assert``."""
    code = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return code[0][:80] if code and code[0].startswith("assert") else None


@contextmanager
def _run_dir_env(folder: Path) -> Iterator[None]:
    before = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before


def run_notebooks(
    path: Path | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_CELL_TIMEOUT_S,
    out_dir: Path | str | None = None,
    stream_output: bool = False,
    reporter: Callable[[str], None] = print,
) -> RunReport:
    """Execute a notebook or a folder of notebooks; raise :class:`NotebookRunError` when one fails.

    ``timeout`` is per cell, in seconds (None: no limit). ``stream_output`` copies the cells' stdout and
    stderr to this process's as they run. The error carries the :class:`RunReport`.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    notebooks = collect_notebooks(Path(path))
    shares = _parameters_for(notebooks, dict(parameters or {}))
    kernel = ensure_kernel()
    folder = Path(out_dir) if out_dir else new_run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    report = RunReport(out_dir=folder)
    started = time.monotonic()
    with _run_dir_env(folder):
        for n, notebook in enumerate(notebooks, 1):
            executed = folder / notebook.name
            given = ", ".join(f"{k}={v!r}" for k, v in shares[notebook].items())
            reporter(f"[{n}/{len(notebooks)}] {notebook.name}" + (f" ({given})" if given else ""))
            t0 = time.monotonic()
            failure = None
            try:
                # ipc transport: the kernel talks over unix sockets, no TCP ports. Their path is
                # set, unique per run: jupyter_client's default can be "kernel-ipc-N" in the cwd,
                # which concurrent runs from one folder (the runbooks) then share, and a client
                # reading another kernel's socket fails with "Invalid Signature" (seen in CI).
                ipc = Path(tempfile.gettempdir()) / f"labkit-kernel-{uuid.uuid4().hex[:16]}"
                papermill.execute_notebook(
                    str(notebook),
                    str(executed),
                    parameters=shares[notebook],
                    kernel_name=kernel,
                    execution_timeout=timeout,
                    cwd=str(notebook.parent),
                    progress_bar=False,
                    stdout_file=sys.stdout if stream_output else None,
                    stderr_file=sys.stderr if stream_output else None,
                    config=Config({"KernelManager": {"transport": "ipc", "ip": str(ipc)}}),
                )
            except (PapermillExecutionError, TimeoutError, RuntimeError) as exc:
                # TimeoutError: nbclient's CellTimeoutError; RuntimeError: DeadKernelError.
                failure = _failure(notebook, executed, exc)
            seconds = time.monotonic() - t0
            result = NotebookResult(notebook, executed, seconds, shares[notebook], failure)
            report.results.append(result)
            written = json.dumps(lesson_result(result, folder), indent=1, default=str) + "\n"
            executed.with_name(f"{notebook.stem}.result.json").write_text(written, encoding="utf-8")
            reporter(f"      {'ok' if failure is None else 'FAILED'} in {seconds:.1f} s -> {executed}")
            if failure is not None:
                report.not_run = notebooks[n:]
                break
    report.seconds = time.monotonic() - started
    failed = report.failed
    if failed is not None and failed.failure is not None:
        raise NotebookRunError(
            f"{failed.source} failed at {failed.failure}",
            hint=f"Open the executed copy {failed.executed} to see the cell's output and traceback.",
            report=report,
        )
    return report
