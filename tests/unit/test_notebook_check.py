"""labkit.lab.check: the repository's notebooks pass, and each check catches what it is for."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from labkit.lab.check import KERNEL_NAME, check_folders, check_notebook, header_sections, headings, main
from labkit.settings import PROJECT_ROOT

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notebooks"
GOOD = FIXTURES / "path" / "01-greet.ipynb"


def test_committed_notebooks_and_runbooks_pass() -> None:
    # Runs over whatever is committed: passes on empty folders, fails on any bad notebook.
    problems = check_folders([PROJECT_ROOT / "notebooks", PROJECT_ROOT / "runbooks"])
    assert not problems, "\n".join(str(p) for p in problems)


@pytest.fixture()
def good() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(GOOD.read_text())
    return doc


def write(tmp_path: Path, doc: dict[str, Any], name: str = "nb.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def messages(path: Path) -> list[str]:
    return [str(p) for p in check_notebook(path)]


def test_fixture_notebooks_pass() -> None:
    assert check_folders([FIXTURES]) == []


def test_outputs_and_execution_counts_are_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hello hello\n"]}]
    doc["cells"][3]["execution_count"] = 3
    doc["cells"][4]["execution_count"] = 4
    path = write(tmp_path, doc)
    found = messages(path)
    assert len(found) == 2
    assert f"{path}: is committed with outputs in cell(s) 3." in found[0]
    assert "execution counts in cell(s) 3, 4" in found[1]
    assert f"jupyter nbconvert --clear-output --inplace {path}" in found[0]
    assert "nbstripout" in found[0]


def test_executed_papermill_copy_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"].insert(
        2,
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "x1",
            "metadata": {"tags": ["injected-parameters"]},
            "outputs": [],
            "source": "greeting = 'hi'",
        },
    )
    found = messages(write(tmp_path, doc))
    assert len(found) == 1 and "tagged injected-parameters" in found[0] and "runs/" in found[0]


def test_missing_parameters_cell_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][1]["metadata"] = {}
    found = messages(write(tmp_path, doc))
    assert len(found) == 1
    assert "has no code cell tagged 'parameters'" in found[0] and "Cell Tags" in found[0]


def test_parameters_tag_on_a_markdown_cell_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][1]["metadata"] = {}
    doc["cells"][0]["metadata"] = {"tags": ["parameters"]}
    found = messages(write(tmp_path, doc))
    assert len(found) == 1 and "cell(s) 0 carry the tag but are not code" in found[0]


def test_two_parameters_cells_are_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][2]["metadata"] = {"tags": ["parameters"]}
    found = messages(write(tmp_path, doc))
    assert len(found) == 1 and "2 cells tagged 'parameters' (1, 2)" in found[0]


def test_first_cell_not_markdown_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"] = doc["cells"][1:]
    found = messages(write(tmp_path, doc))
    assert len(found) == 2 and "has no header: the first cell is code, not markdown" in found[0]
    assert "no 'Parameters' heading right before its parameters cell" in found[1]


def test_empty_notebook_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"] = []
    found = messages(write(tmp_path, doc))
    assert any("first cell is no cell at all" in m for m in found)
    assert any("parameters" in m for m in found)


def set_header(doc: dict[str, Any], text: str) -> dict[str, Any]:
    """``doc`` with ``text`` as its header, followed by the heading that marks the parameters cell."""
    doc = copy.deepcopy(doc)
    doc["cells"][0]["source"] = text + "\n\n## Parameters\nSet them here or with `-p`."
    return doc


def test_header_without_title_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    text = "## Not a title\n\n## Objectives\nx\n\n**Time:** 1 min\n\n**Cost:** none\n\n**Side effects:** none"
    found = messages(write(tmp_path, set_header(good, text)))
    assert len(found) == 1 and "header has no title" in found[0] and "'## Not a title'" in found[0]


def test_header_missing_sections_are_named(tmp_path: Path, good: dict[str, Any]) -> None:
    text = "# Title\n\n## Objectives\n- learn\n\nThe time it takes is short."  # prose, not a Time label
    found = messages(write(tmp_path, set_header(good, text)))
    assert len(found) == 1
    assert "header lacks section(s): time, cost, side effects." in found[0]


def test_header_empty_section_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    text = "# T\n## Objectives\n\n## Time\n5 min\n## Costs\nnone\n## Side effects\nnone\n## Before you begin"
    found = messages(write(tmp_path, set_header(good, text)))
    assert len(found) == 1 and "header section(s) with no text: objectives." in found[0]


def test_header_sections_accepts_headings_labels_and_vertex_spellings() -> None:
    text = "\n".join(
        [
            "# 03 Load balancer",
            "### Objective",
            "- target groups",
            "- **Time**: 10 minutes",
            "__Costs:__ none on the sandbox",
            "Side-effects: creates an ALB",
            "## Overview",
            "not part of any section",
        ]
    )
    assert header_sections(text) == {
        "objectives": "- target groups",
        "time": "10 minutes",
        "cost": "none on the sandbox",
        "side effects": "creates an ALB",
    }


def test_unreadable_notebook_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    found = messages(path)
    assert len(found) == 1 and "cannot be read as notebook JSON" in found[0]


def test_main_prints_problems_and_exits_1(
    tmp_path: Path, good: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["x"]}]
    write(tmp_path, doc, "bad.ipynb")
    write(tmp_path, good, "ok.ipynb")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    write(tmp_path / ".ipynb_checkpoints", doc, "bad-checkpoint.ipynb")  # checkpoints are skipped
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad.ipynb: is committed with outputs in cell(s) 1." in out
    assert "2 notebook(s) checked, 1 problem(s)." in out
    assert main([str(tmp_path / "ok.ipynb")]) == 0


def test_missing_folders_count_as_empty(tmp_path: Path) -> None:
    assert check_folders([tmp_path / "nope"]) == []


def test_a_parameter_papermill_cannot_read_is_a_problem(tmp_path: Path) -> None:
    """papermill skips a line it cannot parse (a `|` in the type, an `=` in the comment), and then
    `labkit run -p NAME` refuses that parameter: the check names it."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from labkit.lab.check import check_notebook

    header = "# T\n\n## Objectives\nx\n\n## Time\n1 min\n\n## Cost\nnone\n\n## Side effects\nnone\n"
    header += "\n## Parameters\n"
    params = new_code_cell(
        'target: str = "sandbox"  # fine\n'
        "region: str | None = None  # a union type\n"
        'spend: bool = False  # target="aws" only\n'
        "rate = 5\n"
    )
    params.metadata["tags"] = ["parameters"]
    path = tmp_path / "nb.ipynb"
    kernelspec = {"name": KERNEL_NAME, "display_name": "Blue/Green Lab", "language": "python"}
    nbformat.write(
        new_notebook(cells=[new_markdown_cell(header), params], metadata={"kernelspec": kernelspec}),
        str(path),
    )
    problems = check_notebook(path)
    assert [p.what for p in problems] == [
        "assigns parameter(s) region, spend that papermill cannot read, so `-p` refuses them."
    ]


def test_a_notebook_on_another_kernel_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    found = messages(write(tmp_path, doc))
    assert len(found) == 1
    assert "declares the kernel 'python3', not the project's 'bluegreen-lab'" in found[0]
    assert "Change Kernel > 'Blue/Green Lab'" in found[0]
    del doc["metadata"]["kernelspec"]
    assert "declares the kernel None" in messages(write(tmp_path, doc))[0]


def test_the_outline_skipping_a_level_or_with_two_titles_is_caught(
    tmp_path: Path, good: dict[str, Any]
) -> None:
    text = "# T\n\n## Objectives\nx\n\n#### Time\n1 min\n\n## Cost\nnone\n\n## Side effects\nnone"
    found = messages(write(tmp_path, set_header(good, text)))
    assert len(found) == 1
    assert "heading 'Time' in cell 0 is level 4 right after a level 2: the outline skips a level" in found[0]
    assert "Make it level 3 (### Time)" in found[0]
    text = "# T\n\n## Objectives\nx\n\n## Time\n1 min\n\n## Cost\nnone\n\n## Side effects\nnone\n\n# Appendix"
    found = messages(write(tmp_path, set_header(good, text)))
    assert len(found) == 1 and "has 2 level-1 headings ('T', 'Appendix')" in found[0]


def test_an_unmarked_parameters_cell_is_caught(tmp_path: Path, good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["cells"][0]["source"] = "".join(doc["cells"][0]["source"]).replace("## Parameters", "## Settings")
    found = messages(write(tmp_path, doc))
    assert len(found) == 1 and "no 'Parameters' heading right before its parameters cell" in found[0]


def test_headings_skip_fenced_code() -> None:
    cells = [
        {"cell_type": "markdown", "source": "# Title\n```bash\n# a shell comment\n```\n## Part"},
        {"cell_type": "code", "source": "# a Python comment"},
        {"cell_type": "markdown", "source": ["### Detail  ##\n", "text"]},
    ]
    assert headings(cells) == [(0, 1, "Title"), (0, 2, "Part"), (2, 3, "Detail")]
