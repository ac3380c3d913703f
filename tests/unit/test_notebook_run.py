"""labkit.lab.run and `labkit run` argument handling, without starting a kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.cli.run import parse_parameter_args
from labkit.errors import ConfigError
from labkit.lab.run import (
    RUN_DIR_ENV,
    CellFailure,
    NotebookResult,
    RunReport,
    _failure,
    _parameters_for,
    artifacts_dir,
    collect_notebooks,
    declared_parameters,
    ensure_kernel,
    new_run_dir,
    parse_value,
    runs_this_interpreter,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notebooks"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("true", True),
        ("True", True),
        ("False", False),
        ("None", None),
        ("null", None),
        ('"quoted text"', "quoted text"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("sandbox", "sandbox"),
        ("1.1.0", "1.1.0"),  # not JSON: stays a string
        ("", ""),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_parse_parameter_args() -> None:
    args = ["-p", "target", "aws", "--parameter", "steps", "[10, 50, 100]", "-p", "dry_run", "false"]
    assert parse_parameter_args(args) == {"target": "aws", "steps": [10, 50, 100], "dry_run": False}
    assert parse_parameter_args([]) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "target"], "-p needs a NAME and a VALUE"),
        (["-p", "--timeout", "3"], "-p needs a NAME and a VALUE"),
        (["--timout", "3"], "Unexpected argument '--timout'"),
        (["-p", "not-a-name", "1"], "'not-a-name' is not a Python identifier"),
    ],
)
def test_parse_parameter_args_rejects(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_parameter_args(args)


def test_collect_notebooks(tmp_path: Path) -> None:
    folder = FIXTURES / "path"
    assert [p.name for p in collect_notebooks(folder)] == ["01-greet.ipynb", "02-count.ipynb"]
    assert collect_notebooks(folder / "02-count.ipynb") == [folder / "02-count.ipynb"]
    with pytest.raises(ConfigError, match=r"holds no \.ipynb notebooks"):
        collect_notebooks(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        collect_notebooks(tmp_path / "missing.ipynb")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not a notebook"):
        collect_notebooks(tmp_path / "notes.txt")


def test_declared_parameters() -> None:
    assert declared_parameters(FIXTURES / "path" / "01-greet.ipynb") == {"greeting", "repeat"}


def test_parameters_are_shared_out_by_declaration() -> None:
    notebooks = collect_notebooks(FIXTURES / "path")
    shares = _parameters_for(notebooks, {"greeting": "hi", "count": 4})
    assert shares == {notebooks[0]: {"greeting": "hi"}, notebooks[1]: {"count": 4}}


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not declare parameter") as info:
        _parameters_for([FIXTURES / "path" / "01-greet.ipynb"], {"count": 4})
    assert "Declared parameters: greeting, repeat" in str(info.value)
    with pytest.raises(ConfigError, match=r"no notebook in the folder declares parameter\(s\) taget"):
        _parameters_for(collect_notebooks(FIXTURES / "path"), {"taget": "aws"})


def test_new_run_dir_is_fresh_and_timestamped(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    assert first.parent == tmp_path and first.is_dir() and second.is_dir()
    assert first != second
    assert len(first.name) == len("20261126-140102") and first.name[8] == "-"


def test_artifacts_dir_follows_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "run1"))
    assert artifacts_dir() == tmp_path / "run1" and (tmp_path / "run1").is_dir()


def test_the_named_kernel_runs_this_interpreter() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    assert ensure_kernel() == "bluegreen-lab"
    spec = KernelSpecManager().get_kernel_spec("bluegreen-lab")
    assert spec.display_name == "Blue/Green Lab"
    assert runs_this_interpreter(spec.argv)
    assert not runs_this_interpreter(["/usr/bin/python2", "-m", "ipykernel_launcher"])


def cell(
    source: str, *, cid: str, tags: list[str] | None = None, pm: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"cell_type": "code", "id": cid, "source": source, "outputs": [], "execution_count": None,
            "metadata": {"tags": tags or [], "papermill": pm or {}}}


def write_nb(path: Path, cells: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


class FakeTimeout(TimeoutError):
    pass


def test_failure_is_numbered_as_in_the_source(tmp_path: Path) -> None:
    from papermill.exceptions import PapermillExecutionError

    source = write_nb(tmp_path / "src.ipynb", [
        cell("x = 1", cid="a", tags=["parameters"]),
        cell("\n\ny = x + 1\n", cid="b"),
        cell("boom()", cid="c"),
    ])
    executed = write_nb(tmp_path / "out.ipynb", [
        {"cell_type": "markdown", "id": "e0", "source": "error banner",
         "metadata": {"tags": ["papermill-error-cell-tag"]}},
        cell("x = 1", cid="a", tags=["parameters"], pm={"start_time": "t"}),
        cell("x = 2", cid="inj", tags=["injected-parameters"], pm={"start_time": "t"}),
        cell("\n\ny = x + 1\n", cid="b", pm={"start_time": "t"}),
        cell("boom()", cid="c", pm={"start_time": "t", "exception": True}),
    ])
    error = PapermillExecutionError(4, 4, "boom()", "NameError", "name 'boom' is not defined",
                                    ["\x1b[31mNameError\x1b[0m: name 'boom' is not defined"])
    failure = _failure(source, executed, error)
    assert failure == CellFailure(2, "boom()", "NameError", "name 'boom' is not defined",
                                  "NameError: name 'boom' is not defined")
    assert str(failure) == "cell 2 ('boom()'): NameError: name 'boom' is not defined"

    # a timeout marks no exception: the last cell that started is the one
    executed = write_nb(tmp_path / "out2.ipynb", [
        cell("x = 1", cid="a", tags=["parameters"], pm={"start_time": "t"}),
        cell("\n\ny = x + 1\n", cid="b", pm={"start_time": "t"}),
        cell("boom()", cid="c", pm={"start_time": None}),
    ])
    failure = _failure(source, executed, FakeTimeout("A cell timed out\nafter 2 seconds"))
    assert (failure.cell_index, failure.first_line, failure.ename) == (1, "y = x + 1", "FakeTimeout")
    assert failure.evalue == "A cell timed out"

    # without cell ids, the cells papermill added are skipped when counting
    for c in (source_cells := json.loads(source.read_text())["cells"]):
        c.pop("id")
    write_nb(source, source_cells)
    executed_cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    for c in executed_cells:
        c.pop("id")
    failure = _failure(source, write_nb(tmp_path / "out3.ipynb", executed_cells), error)
    assert failure.cell_index == 2

    # no executed copy: the kernel never started
    failure = _failure(source, tmp_path / "never.ipynb", RuntimeError("Kernel died before replying"))
    assert failure.cell_index is None
    assert str(failure) == "kernel start: RuntimeError: Kernel died before replying"


def test_summary_lists_status_and_wall_time(tmp_path: Path) -> None:
    report = RunReport(out_dir=tmp_path, seconds=12.34)
    report.results.append(NotebookResult(Path("00-welcome.ipynb"), tmp_path / "00-welcome.ipynb", 3.21, {}))
    report.results.append(
        NotebookResult(Path("01-state.ipynb"), tmp_path / "01-state.ipynb", 9.1, {},
                       CellFailure(4, "assert ok", "AssertionError", ""))
    )
    report.not_run = [Path("02-network-and-more.ipynb")]
    assert not report.ok and report.failed is report.results[1]
    assert report.summary().splitlines() == [
        "notebook                   status   wall time",
        "00-welcome.ipynb           ok            3.2 s",
        "01-state.ipynb             FAILED        9.1 s",
        "02-network-and-more.ipynb  not run",
        f"executed copies: {tmp_path}",
        "total wall time: 12.3 s",
    ]
