"""The drill runner's pieces without a sandbox: the Chaos Toolkit experiment a drill becomes, the
journal chaoslib writes for it, and the lost-state arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit.errors import DrillError, SpendNotAllowedError
from labkit.ops import drill as drill_module
from labkit.ops.drill import chaos_check, experiment, journal_verified, lost_versions
from labkit.ops.drills import Drill
from labkit.ops.probes import STEADY_STATE
from labkit.target import Target

BROKEN: list[str] = []


def toy_inject(target: Target, environment: str, *, what: str = "a cable") -> dict[str, Any]:
    BROKEN.append(what)
    return {"cut": what}


def cable_intact(target: Target, environment: str) -> tuple[bool, str]:
    return (not BROKEN, "intact" if not BROKEN else f"cut: {BROKEN[-1]}")


TOY = Drill(
    name="toy",
    summary="a cable is cut",
    inject=toy_inject,
    runbook=None,
    checks={"cable-intact": cable_intact},
    steady_state=(),
)


def test_the_experiment_checks_the_steady_state_around_the_injection_and_the_runbook() -> None:
    drill = Drill(
        name="d", summary="s", inject=toy_inject, runbook="fix-it", checks={"cable-intact": cable_intact}
    )
    spec = experiment(drill, "staging", {"what": "x"})
    probes = spec["steady-state-hypothesis"]["probes"]
    assert [p["name"] for p in probes] == [*STEADY_STATE, "cable-intact"]
    assert all(p["tolerance"] == {"type": "regex", "pattern": "^ok:"} for p in probes)
    assert [a["name"] for a in spec["method"]] == ["inject d", "runbook fix-it (dry run)", "runbook fix-it"]
    assert spec["method"][0]["provider"]["arguments"] == {"arguments": {"what": "x"}}
    assert [a["provider"]["arguments"].get("dry_run") for a in spec["method"][1:]] == [True, False]
    assert spec["configuration"]["environment"] == "staging"


def test_a_drill_without_a_runbook_only_injects() -> None:
    assert [a["name"] for a in experiment(TOY, "staging")["method"]] == ["inject toy"]


def test_chaoslib_runs_the_experiment_and_the_journal_shows_the_deviation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaoslib.experiment import run_experiment

    BROKEN.clear()
    run = drill_module._DrillRun(TOY, target=None, environment="staging", folder=tmp_path, say=lambda _: None)  # type: ignore[arg-type]
    monkeypatch.setattr(drill_module, "_current", run)
    journal = run_experiment(experiment(TOY, "staging", {"what": "the uplink"}))
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["run"][0]["output"] == {"cut": "the uplink"} and run.facts == {"cut": "the uplink"}
    assert journal["deviated"] is True
    assert journal["steady_states"]["after"]["probes"][0]["output"] == "FAILED: cut: the uplink"


def harmless_inject(target: Target, environment: str, *, what: str = "nothing") -> dict[str, Any]:
    return {"touched": what}


def failing_inject(target: Target, environment: str, *, what: str = "nothing") -> dict[str, Any]:
    raise DrillError("listener-weights starts from blue serving all traffic.", hint="Deploy to blue first.")


@pytest.mark.parametrize(("inject", "verified"), [(harmless_inject, True), (failing_inject, False)])
def test_a_drill_whose_injection_failed_is_not_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inject: Any, verified: bool
) -> None:
    """Found running drift on a stack where green served: the injection refused, chaoslib completed
    the experiment anyway, the steady state held (nothing was broken) and the drill said VERIFIED."""
    from chaoslib.experiment import run_experiment

    BROKEN.clear()
    checks = {"cable-intact": cable_intact}
    drill = Drill(name="toy", summary="s", inject=inject, runbook=None, checks=checks, steady_state=())
    run = drill_module._DrillRun(drill, None, "staging", tmp_path, say=lambda _: None)  # type: ignore[arg-type]
    monkeypatch.setattr(drill_module, "_current", run)
    journal = run_experiment(experiment(drill, "staging"))
    assert journal["status"] == "completed" and not journal["deviated"]  # what chaoslib says either way
    assert [step["status"] for step in journal["run"]] == ["succeeded" if verified else "failed"]
    assert journal_verified(journal) is verified


def test_an_activity_outside_a_drill_run_says_how_to_run_drills() -> None:
    with pytest.raises(DrillError, match="labkit drill run"):
        chaos_check("alb-serves")


@pytest.mark.parametrize(
    ("before", "after", "lost"),
    [
        (("L", 7), ("L", 7), 0),  # restored to the last good version
        (("L", 7), ("L", 9), 0),  # recovery applied on top of it
        (("L", 7), ("L", 5), 2),  # restored an older version: two lost
        (("L", 7), ("other", 1), 7),  # another lineage replaced it
        (("L", 7), None, 7),  # gone or unreadable
        (None, ("L", 1), None),  # nothing to lose
    ],
)
def test_lost_state_versions(
    before: tuple[str, int] | None, after: tuple[str, int] | None, lost: int | None
) -> None:
    assert lost_versions(before, after) == lost


@pytest.mark.parametrize(("allow_spend", "confirm"), [(False, "staging"), (True, ""), (True, "production")])
def test_on_aws_a_drill_needs_both_opt_ins_before_it_touches_anything(
    allow_spend: bool, confirm: str
) -> None:
    real = Target(name="aws", region="eu-west-1", allow_spend=allow_spend)
    with pytest.raises(SpendNotAllowedError, match="real AWS account"):
        drill_module._refuse_on_aws("toy", real, "staging", confirm)
    drill_module._refuse_on_aws(
        "toy", Target(name="aws", region="eu-west-1", allow_spend=True), "staging", "staging"
    )
