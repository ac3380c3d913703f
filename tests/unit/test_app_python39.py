"""The app runs on the instances' Python: Amazon Linux 2023's python3 is 3.9, which the user data
installs. Python 3.11 runs the suite, so only a syntax check can catch 3.10+ code in app/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"


def _runtime_unions(tree: ast.AST) -> list[int]:
    """Lines with ``X | Y`` outside annotations: evaluated at run time, a TypeError on 3.9 between
    types. (Annotations are strings under ``from __future__ import annotations``.)"""
    in_annotations: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign | ast.arg):
            parts.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
        in_annotations.update(id(sub) for part in parts if part is not None for sub in ast.walk(part))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in in_annotations
    ]


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP)))
def test_app_source_runs_on_python_39(path: Path) -> None:
    source = path.read_text()
    ast.parse(source, filename=str(path), feature_version=(3, 9))  # match, parenthesized with, ...
    assert _runtime_unions(ast.parse(source)) == [], f"{path}: use Union[...]/a tuple (3.9 has no X | Y)"
    assert "from __future__ import annotations" in source, f"{path}: annotations would be evaluated on 3.9"


def test_the_check_finds_a_runtime_union() -> None:
    tree = ast.parse("from __future__ import annotations\nx: int | None = None\nV = int | str\n")
    assert _runtime_unions(tree) == [3]
