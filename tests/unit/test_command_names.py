"""Every `labkit ...` command the docs, the notebooks and labkit's own hints name exists and parses.

The commands are collected from README.md, ROADMAP.md, terraform/**/README.md, runbooks/ (once it
exists), the notebooks (markdown, `!labkit` lines and strings in code cells) and every string in
labkit/ (error hints, docstrings); each runs in-process with `--help` appended. `--help` is handled
before values are converted, so placeholders (ENV, VERSION, URL) pass, while an unknown command or
option fails as it would for a reader who types it.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.settings import PROJECT_ROOT

runner = CliRunner()

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
#: Example values for what an f-string hint fills in, by the name it fills in from.
_EXAMPLES = {"env": "staging", "version": "1.0.0", "action": "resume"}


def _from_markdown(text: str) -> Iterator[str]:
    for block in _FENCE.findall(text):
        for line in block.splitlines():
            line = line.split(" #")[0].strip().removeprefix("$ ").removeprefix("!")
            if line.startswith("labkit "):
                yield line
    for _, span in _SPAN.findall(_FENCE.sub("", text)):
        yield from _from_span(span)


def _from_span(span: str) -> Iterator[str]:
    span = " ".join(span.split()).removeprefix("!")
    if span.startswith("labkit "):
        yield span


def _from_notebook(path: Path) -> Iterator[str]:
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            yield from _from_markdown(source)
            continue
        for line in source.splitlines():
            if line.strip().startswith("!labkit "):
                yield line.strip()[1:]
        yield from _from_python(source)


def _from_python(source: str) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a notebook cell with shell magics
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else _example(part) for part in node.values
            )
        else:
            continue
        for _, span in _SPAN.findall(text):
            yield from _from_span(span)


def _example(part: ast.expr) -> str:
    name = ast.unparse(part.value if isinstance(part, ast.FormattedValue) else part)
    for suffix, example in _EXAMPLES.items():
        if re.search(rf"\b{suffix}\b", name):
            return example
    return "X"


def collect() -> dict[str, set[str]]:
    """command -> where it is written."""
    root = PROJECT_ROOT
    found: dict[str, set[str]] = {}

    def add(commands: Iterator[str], where: Path) -> None:
        for command in commands:
            found.setdefault(command.rstrip(".,;:"), set()).add(str(where.relative_to(root)))

    markdown = [root / "README.md", root / "ROADMAP.md", *sorted((root / "terraform").rglob("README.md"))]
    markdown += sorted((root / "runbooks").rglob("*.md")) if (root / "runbooks").is_dir() else []
    for path in markdown:
        add(_from_markdown(path.read_text()), path)
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    notebooks += sorted((root / "runbooks").rglob("*.ipynb")) if (root / "runbooks").is_dir() else []
    for path in notebooks:
        add(_from_notebook(path), path)
    for path in sorted((root / "labkit").rglob("*.py")):
        add(_from_python(path.read_text()), path)
    return found


def variants(command: str) -> list[list[str]]:
    """The command lines a written command stands for: `[...]` opened, `a|b`, `a | b` and `a / b` each."""
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("...", " "))[1:]
    groups: list[list[str]] = []
    joining = False
    for word in words:
        if word in ("/", "|"):
            joining = True
            continue
        if joining and groups:
            groups[-1] += word.split("|")
        else:
            groups.append(word.split("|"))
        joining = False
    return [list(choice) for choice in itertools.product(*groups)]


COMMANDS = collect()


def test_the_docs_name_commands_at_all() -> None:
    """The collector works: it finds the commands known to be written in each kind of source."""
    assert "labkit stack apply global" in COMMANDS  # terraform/README.md, in a code block
    assert any(c.startswith("labkit deploy status") for c in COMMANDS)  # a notebook
    assert any(c.startswith("labkit release build") and "labkit/deploy/controller.py" in w
               for c, w in COMMANDS.items())  # fmt: skip
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_written_anywhere_parses(command: str) -> None:
    for args in variants(command):
        result = runner.invoke(app, [*args, "--help"])
        where = ", ".join(sorted(COMMANDS[command]))
        parsed = "Usage:" in result.output or result.output.startswith("labkit ")  # or --version
        assert result.exit_code == 0 and parsed, (
            f"`{command}` (in {where}) does not parse as `labkit {' '.join(args)}`:\n{result.output}"
        )


def test_an_unknown_command_or_option_fails_the_check() -> None:
    """The check can fail: --help does not hide a misspelled command or option."""
    for args in (["stack", "aply", "staging"], ["deploy", "staging", "1.0.0", "--stratgy", "x"]):
        assert runner.invoke(app, [*args, "--help"]).exit_code == 2
