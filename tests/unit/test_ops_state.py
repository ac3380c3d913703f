"""The restore-state runbook's pure logic: parsing a state object and choosing the version to restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from labkit.errors import StateRecoveryError
from labkit.ops.state import Parsed, StateVersion, choose_version, diagnose, expected_lineage, parse_state

GOOD, OTHER = "1111-good", "2222-other"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def state(lineage: str = GOOD, serial: int = 7) -> bytes:
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": serial,
        "lineage": lineage,
        "outputs": {},
        "resources": [{"mode": "managed", "type": "aws_vpc", "name": "this", "instances": []}],
        "check_results": None,
    }
    return json.dumps(doc, indent=2).encode()


def versions(*bodies: bytes | None) -> list[StateVersion]:
    """Versions newest first; None is a delete marker."""
    out = []
    for n, body in enumerate(bodies):
        parsed = Parsed("delete-marker") if body is None else parse_state(body)
        out.append(StateVersion(f"v{len(bodies) - n}", T0 - timedelta(seconds=n), n == 0, 0, parsed))
    return out


def test_a_state_parses_with_its_lineage_and_serial() -> None:
    parsed = parse_state(state(serial=12))
    assert (parsed.kind, parsed.lineage, parsed.serial, parsed.terraform_version) == (
        "state",
        GOOD,
        12,
        "1.11.4",
    )


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "empty"),
        (b"\n  \n", "empty"),
        (bytes(range(256)) * 4, "garbage"),
        (b"not json at all", "garbage"),
        (state()[: len(state()) // 2], "truncated"),
        (state()[:40], "truncated"),
        (b'{"version": 4, "lineage": "x", "serial": 1, "resources": [{"a": "unterminated', "truncated"),
        (b"[1, 2, 3]", "not-state"),
        (b'{"version": 3, "lineage": "x", "serial": 1}', "not-state"),
        (b'{"version": 4, "serial": 1}', "not-state"),
    ],
)
def test_what_is_not_a_state_says_why(body: bytes, kind: str) -> None:
    assert parse_state(body).kind == kind


def test_the_expected_lineage_is_the_one_most_recent_states_share() -> None:
    history = versions(state(OTHER, 1), b"garbage", state(GOOD, 9), state(GOOD, 8), state(GOOD, 7))
    assert expected_lineage(history) == GOOD
    assert expected_lineage(versions(b"garbage", None)) is None


def test_a_tie_between_lineages_asks_for_the_lineage() -> None:
    with pytest.raises(StateRecoveryError, match="lineage") as raised:
        expected_lineage(versions(state(OTHER, 2), state(OTHER, 1), state(GOOD, 9), state(GOOD, 8)))
    assert "-p lineage" in str(raised.value.hint)


def test_the_chosen_version_has_the_lineage_and_the_highest_serial() -> None:
    history = versions(state(OTHER, 50), state(GOOD, 8), state(GOOD, 9), b"{", state(GOOD, 7))
    chosen = choose_version(history, GOOD)
    assert chosen is not None and chosen.serial == 9 and chosen.version_id == "v3"
    assert choose_version(history, "nope") is None


def test_of_equal_serials_the_newest_is_chosen() -> None:
    history = versions(state(GOOD, 9), state(GOOD, 9))
    chosen = choose_version(history, GOOD)
    assert chosen is not None and chosen.version_id == "v2"


@pytest.mark.parametrize(
    ("newest", "problem"),
    [
        (b"\x00\xff garbage", "garbage"),
        (state()[:100], "truncated"),
        (b"", "empty"),
        (b"{}", "not-state"),
        (None, "deleted"),
        (state(OTHER, 30), "other-lineage"),
        (state(GOOD, 3), "behind"),
    ],
)
def test_each_broken_current_object_is_diagnosed_and_the_last_good_version_chosen(
    newest: bytes | None, problem: str
) -> None:
    finding = diagnose(versions(newest, state(GOOD, 9), state(GOOD, 8)), bucket="b", key="staging/k")
    assert finding.problem == problem
    assert not finding.ok
    assert finding.chosen is not None and finding.chosen.serial == 9
    assert finding.last_good_serial == 9
    assert problem.split("-")[0] in str(finding) or problem == "not-state"


def test_a_healthy_state_needs_nothing() -> None:
    finding = diagnose(versions(state(GOOD, 10), b"garbage", state(GOOD, 9)))
    assert finding.ok and finding.chosen is None and finding.last_good_serial == 10
    assert "fine" in str(finding)


def test_a_given_lineage_wins_over_the_guess() -> None:
    history = versions(state(OTHER, 3), state(OTHER, 2), state(GOOD, 9))
    assert diagnose(history).ok
    finding = diagnose(history, lineage=GOOD)
    assert finding.problem == "other-lineage" and finding.chosen is not None and finding.chosen.serial == 9


def test_nothing_to_restore_from_says_so() -> None:
    with pytest.raises(StateRecoveryError, match="nothing to restore"):
        diagnose(versions(b"garbage", None, b"{"))
    with pytest.raises(StateRecoveryError, match="missing"):
        diagnose([])
