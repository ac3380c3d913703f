"""Checks every committed notebook must pass: stripped outputs, a ``parameters`` cell, a header.

Run over the repository by ``tests/unit/test_notebook_check.py`` (part of the whole suite) and by hand
with ``python -m labkit.lab.check notebooks runbooks``.

What is checked, per notebook:

1. **Stripped.** No code cell has outputs or an execution count, and no cell is tagged
   ``injected-parameters`` (that tag marks papermill's executed copy, which belongs under ``runs/``).
   Fix with ``jupyter nbconvert --clear-output --inplace NB`` or ``nbstripout NB``.
2. **Parameters.** Exactly one code cell is tagged ``parameters`` (papermill injects its values after
   the first such cell; a second one would be silently ignored by papermill).
3. **Header.** The first cell is a markdown cell that

   - starts (first non-blank line) with a level-1 title: ``# Title`` with some text after ``# ``;
   - has a non-empty section for each of **objectives**, **time**, **cost** and **side effects**.

   A section opens with a heading (``## Objectives``, any level from ``##`` to ``######``) or with a
   label line (``**Time:** 10 minutes``, ``Cost: none on the sandbox``, ``- **Side effects:** ...``; the
   colon is required, bold is optional, a leading list marker is allowed). Its body is the rest of the
   label line plus every following line up to the next section; it must hold some text. Labels match
   case-insensitively, and the Vertex AI template's singular/plural spellings are accepted:
   ``Objective``/``Objectives``, ``Cost``/``Costs``, ``Side effects``/``Side-effects``.

   This is the head of the Vertex AI notebook template (title, overview, objective, costs) with the two
   things DESIGN.md adds for this lab: how long it takes and what it changes.
4. **Kernel.** The notebook declares the project's kernel, :data:`KERNEL_NAME` ("Blue/Green Lab"), which
   ``make setup`` registers in the project's venv; a notebook declaring ``python3`` would run on whatever
   interpreter a JupyterLab outside the venv offers.
5. **Outline.** JupyterLab's table of contents reads well: one level-1 heading, first; no heading goes
   more than one level below the one before it; and the last heading before the parameters cell is
   ``Parameters``, so the cell papermill rewrites is visibly marked.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The header sections, each as (canonical name, regex alternative for the label).
HEADER_SECTIONS: tuple[tuple[str, str], ...] = (
    ("objectives", r"objectives?"),
    ("time", r"time"),
    ("cost", r"costs?"),
    ("side effects", r"side[ -]effects"),
)
_LABELS = "|".join(f"(?P<s{i}>{rx})" for i, (_, rx) in enumerate(HEADER_SECTIONS))
_HEADING = re.compile(rf"^\s{{0,3}}#{{2,6}}\s+(?:{_LABELS})\s*:?\s*#*\s*$", re.IGNORECASE)
_LABEL_LINE = re.compile(
    rf"^\s*(?:[-*+]\s+)?(?P<em>\*\*|__)?(?:{_LABELS})\s*(?P<c1>:)?(?P=em)?\s*(?P<c2>:)?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_ANY_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TITLE = re.compile(r"^#\s+\S")

#: The kernel every notebook and runbook declares: this venv's ipykernel under a name of its own, so a
#: JupyterLab started outside the venv (or a user-level ``python3`` kernelspec) cannot silently run the
#: lessons on another interpreter. ``make setup`` registers it; :mod:`labkit.lab.run` runs on it.
KERNEL_NAME = "bluegreen-lab"
KERNEL_DISPLAY_NAME = "Blue/Green Lab"
_OUTLINE_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)[\s#]*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")

STRIP_FIX = "jupyter nbconvert --clear-output --inplace {path}  (or: nbstripout {path})"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one notebook, and how to fix it."""

    path: Path
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}\n  fix: {self.fix}"


def _tags(cell: dict[str, Any]) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat stores it as a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def header_sections(markdown: str) -> dict[str, str]:
    """The header sections found in a markdown text: canonical name -> body (stripped).

    A later section of the same name replaces an earlier one only if the earlier one was empty.
    """
    found: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            text = "\n".join(body).strip()
            if text or current not in found:
                found[current] = text

    for line in markdown.splitlines():
        heading = _HEADING.match(line)
        label = None if heading else _LABEL_LINE.match(line)
        if label and not (label.group("c1") or label.group("c2")):
            label = None  # "Time flies" is prose, not a label: the colon is what makes a label
        match = heading or label
        if match:
            close()
            index = next(i for i in range(len(HEADER_SECTIONS)) if match.group(f"s{i}"))
            current = HEADER_SECTIONS[index][0]
            body = [label.group("rest")] if label else []
        elif _ANY_HEADING.match(line):
            close()  # another heading ends the section without opening a checked one
            current, body = None, []
        elif current is not None:
            body.append(line)
    close()
    return found


def _check_header(path: Path, cells: Sequence[dict[str, Any]]) -> list[Problem]:
    fix_header = (
        "Make the first cell markdown: '# Title', then '## Objectives', '## Time', '## Cost' and "
        "'## Side effects' sections (or '**Time:** ...' lines), each with some text. "
        "See labkit/lab/check.py for the exact rules."
    )
    if not cells or cells[0].get("cell_type") != "markdown":
        kind = cells[0].get("cell_type", "?") if cells else "no cell at all"
        return [Problem(path, f"has no header: the first cell is {kind}, not markdown.", fix_header)]
    text = cell_source(cells[0])
    problems = []
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not _TITLE.match(first_line):
        problems.append(
            Problem(
                path,
                f"header has no title: its first line is {first_line[:60]!r}, not '# Title'.",
                "Start the first markdown cell with a level-1 heading: '# NN Title of the lesson'.",
            )
        )
    sections = header_sections(text)
    missing = [name for name, _ in HEADER_SECTIONS if name not in sections]
    empty = [name for name, _ in HEADER_SECTIONS if sections.get(name) == ""]
    if missing:
        problems.append(Problem(path, f"header lacks section(s): {', '.join(missing)}.", fix_header))
    if empty:
        problems.append(
            Problem(
                path,
                f"header section(s) with no text: {', '.join(empty)}.",
                "Write something under each section, e.g. '**Cost:** none on the sandbox; "
                "about $0.05 on AWS'.",
            )
        )
    return problems


def _check_stripped(path: Path, cells: Sequence[dict[str, Any]]) -> list[Problem]:
    fix = STRIP_FIX.format(path=path)
    with_outputs = [i for i, c in enumerate(cells) if c.get("cell_type") == "code" and c.get("outputs")]
    with_counts = [
        i
        for i, c in enumerate(cells)
        if c.get("cell_type") == "code" and c.get("execution_count") is not None
    ]
    injected = [i for i, c in enumerate(cells) if "injected-parameters" in _tags(c)]
    problems = []
    if with_outputs:
        problems.append(Problem(path, f"is committed with outputs in cell(s) {_cells(with_outputs)}.", fix))
    if with_counts:
        problems.append(
            Problem(path, f"is committed with execution counts in cell(s) {_cells(with_counts)}.", fix)
        )
    if injected:
        problems.append(
            Problem(
                path,
                f"is an executed papermill copy: cell(s) {_cells(injected)} are tagged injected-parameters.",
                "Commit the source notebook, not the copy from runs/; delete the injected-parameters cell.",
            )
        )
    return problems


def _check_parameters(path: Path, cells: Sequence[dict[str, Any]]) -> list[Problem]:
    tagged = [i for i, c in enumerate(cells) if "parameters" in _tags(c)]
    code = [i for i in tagged if cells[i].get("cell_type") == "code"]
    if not code:
        where = f" (cell(s) {_cells(tagged)} carry the tag but are not code)" if tagged else ""
        return [
            Problem(
                path,
                f"has no code cell tagged 'parameters'{where}.",
                "Put the typed defaults (target = \"sandbox\", ...) in one code cell and tag it 'parameters' "
                "(JupyterLab: Property Inspector -> Cell Tags).",
            )
        ]
    if len(tagged) > 1:
        return [
            Problem(
                path,
                f"has {len(tagged)} cells tagged 'parameters' ({_cells(tagged)}); "
                "papermill only uses the first.",
                "Merge them into one parameters cell.",
            )
        ]
    return _check_parameters_readable(path, cell_source(cells[code[0]]))


def _check_parameters_readable(path: Path, source: str) -> list[Problem]:
    """Every name the parameters cell assigns must be one papermill reads, or ``-p NAME`` is refused.

    papermill skips a line it cannot parse, e.g. a ``|`` in the type or an ``=`` in the comment.
    """
    import ast
    import contextlib
    import io

    from papermill.translators import PythonTranslator

    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [Problem(path, f"has a parameters cell that is not valid Python: {exc}.", "Fix the cell.")]
    targets = [
        target
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
    ]
    assigned = {target.id for target in targets if isinstance(target, ast.Name)}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        readable = {p.name for p in PythonTranslator.inspect({"source": source})}
    unread = sorted(assigned - readable)
    if not unread:
        return []
    return [
        Problem(
            path,
            f"assigns parameter(s) {', '.join(unread)} that papermill cannot read, so `-p` refuses them.",
            "Write each as `name: type = value  # help`, with a plain type (str, int, float, bool, list) "
            "and no '=' in the comment.",
        )
    ]


def _cells(indexes: Iterable[int]) -> str:
    return ", ".join(str(i) for i in indexes)


def headings(cells: Sequence[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """Every markdown heading as (cell index, level, text), as JupyterLab's outline lists them."""
    found: list[tuple[int, int, str]] = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        fenced = False
        for line in cell_source(cell).splitlines():
            if _FENCE.match(line):
                fenced = not fenced
            elif not fenced and (match := _OUTLINE_HEADING.match(line)):
                found.append((index, len(match.group(1)), match.group(2)))
    return found


def _check_kernel(path: Path, doc: Mapping[str, Any]) -> list[Problem]:
    spec = doc.get("metadata", {}).get("kernelspec") or {}
    name = spec.get("name") if isinstance(spec, dict) else None
    if name == KERNEL_NAME:
        return []
    return [
        Problem(
            path,
            f"declares the kernel {name!r}, not the project's {KERNEL_NAME!r}.",
            f"In JupyterLab pick Kernel > Change Kernel > '{KERNEL_DISPLAY_NAME}' and save, or set "
            f'metadata.kernelspec to {{"name": "{KERNEL_NAME}", "display_name": "{KERNEL_DISPLAY_NAME}", '
            '"language": "python"}.',
        )
    ]


def _check_outline(path: Path, cells: Sequence[dict[str, Any]]) -> list[Problem]:
    found = headings(cells)
    problems: list[Problem] = []
    titles = [text for _, level, text in found if level == 1]
    if len(titles) > 1:
        problems.append(
            Problem(
                path,
                f"has {len(titles)} level-1 headings ({', '.join(map(repr, titles))}); the outline "
                "wants one.",
                "Keep the title as the only '# ' heading; make the others '## '.",
            )
        )
    for (_, before, _), (index, level, text) in itertools.pairwise(found):
        if level > before + 1:
            problems.append(
                Problem(
                    path,
                    f"heading {text!r} in cell {index} is level {level} right after a level {before}: "
                    "the outline skips a level.",
                    f"Make it level {before + 1} ({'#' * (before + 1)} {text}).",
                )
            )
    marked = [i for i, c in enumerate(cells) if c.get("cell_type") == "code" and "parameters" in _tags(c)]
    if marked:
        above = [text for index, _, text in found if index < marked[0]]
        if not above or above[-1].strip().lower() != "parameters":
            problems.append(
                Problem(
                    path,
                    "has no 'Parameters' heading right before its parameters cell, so the outline does not "
                    "show where the values papermill replaces are.",
                    "End the markdown cell before it with '## Parameters' and a line on how to set them.",
                )
            )
    return problems


def check_notebook(path: Path) -> list[Problem]:
    """Every problem with one notebook file; an empty list when it passes."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = f"cannot be read as notebook JSON: {exc}."
        return [Problem(path, what, "Restore it from git or re-save it.")]
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        what = "is not an nbformat 4 notebook (no 'cells' list)."
        return [Problem(path, what, "Re-save it in JupyterLab.")]
    return [
        *_check_header(path, cells),
        *_check_parameters(path, cells),
        *_check_stripped(path, cells),
        *_check_kernel(path, doc),
        *_check_outline(path, cells),
    ]


def find_notebooks(folders: Iterable[Path]) -> list[Path]:
    """The ``*.ipynb`` files under the folders, recursively, skipping ``.ipynb_checkpoints``."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_file():
            found.append(folder)
            continue
        found.extend(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return sorted(found)


def check_folders(folders: Iterable[Path]) -> list[Problem]:
    """Every problem with every notebook under the folders (missing folders count as empty)."""
    return [p for nb in find_notebooks(f for f in folders if f.exists()) for p in check_notebook(nb)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.lab.check [PATH ...]``: print problems, exit 1 if there are any."""
    from labkit.settings import PROJECT_ROOT

    args = list(sys.argv[1:] if argv is None else argv)
    folders = [Path(a) for a in args] or [PROJECT_ROOT / "notebooks", PROJECT_ROOT / "runbooks"]
    notebooks = find_notebooks(f for f in folders if f.exists())
    problems = [p for nb in notebooks for p in check_notebook(nb)]
    for problem in problems:
        print(problem)
    print(f"{len(notebooks)} notebook(s) checked, {len(problems)} problem(s).")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
