"""For `pytest --nbval-lax notebooks/`: the notebooks run one after another on one worker.

Each lesson builds on the one before, and nbval runs a notebook's cells as separate tests in one
kernel, so they must all stay in order on one pytest-xdist worker (the project's pytest options run
tests in parallel groups, `--dist loadgroup`).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist turns the marks into groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group("learning-path"))
