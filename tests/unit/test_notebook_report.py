"""labkit.lab.report: a run folder rendered to a static site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ConfigError
from labkit.lab.report import latest_run, render_report


def executed(path: Path, *, output: str, exception: bool, seconds: float, parameters: dict[str, Any]) -> None:
    """A notebook as papermill leaves it: outputs, execution counts and papermill metadata."""
    doc = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "papermill": {"duration": seconds, "exception": exception or None, "parameters": parameters},
        },
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# A lesson"},
            {
                "cell_type": "code",
                "id": "b",
                "metadata": {},
                "execution_count": 1,
                "source": "print('hi')",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": output}],
            },
        ],
    }
    path.write_text(json.dumps(doc))


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_render_report(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20261126-140000"
    run.mkdir(parents=True)
    executed(
        run / "00-welcome.ipynb",
        output="hello <world>\n",
        exception=False,
        seconds=3.25,
        parameters={"target": "sandbox"},
    )
    executed(run / "01-state.ipynb", output="boom\n", exception=True, seconds=1.5, parameters={})
    (run / "cost.png").write_bytes(PNG)

    index = render_report(run)
    assert index == run / "site" / "index.html"
    page = index.read_text()
    assert "<a href='00-welcome.html'>00-welcome.ipynb</a>" in page
    assert "<td class='ok'>ok</td><td>3.2 s</td><td><code>target=&#x27;sandbox&#x27;</code>" in page
    assert "<td class='failed'>FAILED</td><td>1.5 s</td>" in page
    assert "2 notebook(s), 1 ok, 4.8 s of notebook time." in page
    assert "<img src='figures/cost.png'" in page
    assert (run / "site" / "figures" / "cost.png").read_bytes() == PNG
    notebook_page = (run / "site" / "00-welcome.html").read_text()
    assert "hello &lt;world&gt;" in notebook_page and "A lesson" in notebook_page


def test_latest_run_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="No run folder with executed notebooks"):
        latest_run(root)
    for name in ("20261126-120000", "20261126-130000"):
        (root / name).mkdir(parents=True)
        executed(root / name / "a.ipynb", output="x", exception=False, seconds=1, parameters={})
    (root / "20261126-140000").mkdir()  # newer, but empty
    assert latest_run(root) == root / "20261126-130000"
    with pytest.raises(ConfigError, match="holds no executed notebooks"):
        render_report(root / "20261126-140000")
