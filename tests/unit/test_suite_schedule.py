"""The suite's own schedule (tests/conftest.py): the long xdist groups it hands out first exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import DRILLS_GROUP, LONG_GROUPS, STAGING_GROUP, long_group_rank

TESTS = Path(__file__).resolve().parents[1]


def _groups_the_tests_name() -> set[str]:
    marked = {
        match.group(1)
        for path in TESTS.rglob("test_*.py")
        for match in re.finditer(r'xdist_group\("([^"]+)"\)', path.read_text())
    }
    return marked | {STAGING_GROUP, DRILLS_GROUP}


def test_every_long_group_is_a_group_some_test_is_in() -> None:
    # A renamed group would drop out of the order silently and run wherever its file sorts.
    assert set(LONG_GROUPS) <= _groups_the_tests_name()
    assert len(set(LONG_GROUPS)) == len(LONG_GROUPS)


def test_long_groups_go_first_in_their_order_and_the_rest_after() -> None:
    ranks = [long_group_rank(group) for group in (*LONG_GROUPS, "tests/unit/test_app.py")]
    assert ranks == sorted(ranks)
    assert ranks[-1] == len(LONG_GROUPS) > ranks[-2]
