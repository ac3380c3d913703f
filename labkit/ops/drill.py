"""Disaster drills as Chaos Toolkit experiments whose probes and actions call labkit.

A drill (a :class:`~labkit.ops.drills.Drill`: one module in :mod:`labkit.ops.drills`, each
defining ``DRILL``) breaks the sandbox the
way the disaster happens in life, through the APIs a person or a process would use. ``labkit drill
run NAME`` turns it into a Chaos Toolkit experiment (:func:`experiment`) and runs it with
``chaoslib``:

- **steady-state hypothesis**, checked before and after: the environment serves through its ALB, a
  plan shows no changes, the ledger agrees with the listener (:mod:`labkit.ops.probes`), plus the
  drill's own checks (the state's lineage and serial, ...). None of them is the runbook's own code;
- **method**: the injection, then the matching runbook headless with papermill, first as a dry
  run (which must change nothing), then with ``confirm``;
- **journal**: Chaos Toolkit's, saved under ``runs/drills/`` with the runbooks' executed copies.

A load probe runs through the ALB for the whole drill, and :class:`DrillReport` gives its figures:
time to detect (injection to the runbook's plan naming the fix), time to recover (to the runbook's
verified end) and to be verified independently (the steady state after), requests failed from the
injection to the recovery, and state versions lost (the last good serial before the injection
against the serial after).

Why Chaos Toolkit rather than the same shape in labkit: its experiment and journal formats are the
ones chaos engineers read, ``labkit drill export NAME`` writes an experiment its ``chaos run`` can
run, and its library costs one small dependency. The one thing it lacks, handing the injection's
facts to the runbook step, goes through :data:`_current` (activities run in this process, in order).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from labkit.errors import DrillError, SpendNotAllowedError, StackError
from labkit.infra.stack import Stack, state_key
from labkit.lab.run import runs_root
from labkit.ops.drills import Drill, all_drills
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.ops.probes import STEADY_STATE
from labkit.target import Target


def get(name: str) -> Drill:
    known = all_drills()
    if name not in known:
        raise DrillError(
            f"There is no drill {name!r}.", hint=f"Drills: {', '.join(known)} (`labkit drill list`)."
        )
    return known[name]


def inject(
    name: str,
    target: Target,
    environment: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    confirm: str = "",
) -> dict[str, Any]:
    """Break ``environment`` as drill ``name`` does; on AWS only with ``allow_spend`` and
    ``confirm`` equal to the environment's name."""
    drill = get(name)
    _refuse_on_aws(name, target, environment, confirm)
    return dict(drill.inject(target, environment, **dict(arguments or {})))


def _refuse_on_aws(name: str, target: Target, environment: str, confirm: str) -> None:
    """Drills break things: on AWS only with the spending opt-in and ``confirm`` naming the environment."""
    if not target.is_sandbox and (not target.allow_spend or confirm != environment):
        raise SpendNotAllowedError(
            f"Drill {name} would break {environment} on a real AWS account.",
            hint=f"Drills are meant for the sandbox. On AWS pass --allow-spend and --confirm {environment}.",
        )


# -- the experiment ----------------------------------------------------------------------------


def experiment(drill: Drill, environment: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Chaos Toolkit experiment of ``drill`` on ``environment``."""
    probes = [_probe(name) for name in (*drill.steady_state, *drill.checks)]
    method: list[dict[str, Any]] = [
        _activity("action", f"inject {drill.name}", "chaos_inject", {"arguments": dict(arguments or {})})
    ]
    if drill.runbook is not None:
        method += [
            _activity("action", f"runbook {drill.runbook} (dry run)", "chaos_runbook", {"dry_run": True}),
            _activity("action", f"runbook {drill.runbook}", "chaos_runbook", {"dry_run": False}),
        ]
    return {
        "version": "1.0.0",
        "title": f"{drill.name}: {drill.summary}",
        "description": f"Inject {drill.name} into {environment}, recover it with "
        + (f"the {drill.runbook} runbook" if drill.runbook else "nothing (its outcome is the check)")
        + ", and verify with checks the runbook did not write.",
        "tags": ["labkit", "drill", drill.name],
        "configuration": {"labkit_target": "sandbox", "environment": environment, "drill": drill.name},
        "steady-state-hypothesis": {"title": f"{environment} serves and matches its code", "probes": probes},
        "method": method,
        "rollbacks": [],
    }


def _activity(kind: str, name: str, func: str, arguments: dict[str, Any]) -> dict[str, Any]:
    provider = {"type": "python", "module": __name__, "func": func, "arguments": arguments}
    return {"type": kind, "name": name, "provider": provider}


def _probe(check: str) -> dict[str, Any]:
    probe = _activity("probe", check, "chaos_check", {"check": check})
    probe["tolerance"] = {"type": "regex", "pattern": "^ok:"}
    return probe


@dataclass
class _DrillRun:
    """What the activities of the running experiment share."""

    drill: Drill
    target: Target
    environment: str
    folder: Path
    facts: dict[str, Any] = field(default_factory=dict)
    runs: list[RunbookRun] = field(default_factory=list)
    say: Callable[[str], None] = print


#: The experiment running in this process (chaoslib calls the activities below in order).
_current: _DrillRun | None = None


def _running() -> _DrillRun:
    if _current is None:
        raise DrillError(
            "A labkit drill activity ran outside `labkit drill run`.",
            hint="Run drills with `labkit drill run NAME`; `labkit drill export` is for reading.",
        )
    return _current


def chaos_check(check: str, configuration: dict[str, Any] | None = None) -> str:
    """Chaos Toolkit probe: ``ok: ...`` or ``FAILED: ...`` (the tolerance matches ``^ok:``)."""
    run = _running()
    fn = STEADY_STATE.get(check) or run.drill.checks[check]
    ok, detail = fn(run.target, run.environment)
    run.say(f"  {'ok' if ok else 'FAILED'}: {check} ({detail})")
    return f"{'ok' if ok else 'FAILED'}: {detail}"


def chaos_inject(arguments: dict[str, Any], configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chaos Toolkit action: the injection; its facts go to the runbook step."""
    run = _running()
    run.say(f"injecting {run.drill.name} into {run.environment} ...")
    run.facts = dict(run.drill.inject(run.target, run.environment, **arguments))
    run.say(f"  injected: {json.dumps(run.facts, default=str)}")
    return run.facts


def chaos_runbook(dry_run: bool, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chaos Toolkit action: the drill's runbook, headless; raises unless it ended as expected."""
    run = _running()
    assert run.drill.runbook is not None  # only planned for drills with a runbook
    environment = run.drill.runbook_environment or run.environment
    parameters = {
        "environment": environment,
        "dry_run": dry_run,
        "confirm": "" if dry_run else environment,
        **run.drill.runbook_parameters(run.facts),
    }
    run.say(f"runbook {run.drill.runbook} on {environment} ({'dry run' if dry_run else 'confirmed'}) ...")
    before = state_fingerprint(run.target, environment)
    result = run_runbook(
        run.drill.runbook, run.target, parameters, out_root=run.folder, reporter=lambda _: None
    )
    run.runs.append(result)
    run.say(f"  {result.record.outcome}: {result.record.summary} ({result.executed})")
    wanted = "planned" if dry_run else "recovered"
    if dry_run and (after := state_fingerprint(run.target, environment)) != before:
        raise DrillError(
            f"The dry run of {run.drill.runbook} changed the state of {environment}: "
            f"{before} before, {after} after.",
            hint=f"A dry run must only list what it would do; read its executed copy {result.executed}",
        )
    if result.record.outcome != wanted:
        raise DrillError(
            f"Runbook {run.drill.runbook} ended {result.record.outcome!r}, not {wanted!r}: "
            f"{result.record.summary}" + (f" ({result.error.message})" if result.error else ""),
            hint=f"Open its executed copy: {result.executed}",
        )
    return result.record.to_json()


# -- running a drill ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillReport:
    """A drill's outcome and figures (seconds; None where the drill has no such moment)."""

    name: str
    environment: str
    verified: bool
    journal: Path
    time_to_detect_s: float | None
    time_to_recover_s: float | None
    time_to_verified_s: float | None
    requests: int
    failed_requests: int
    lost_state_versions: int | None
    facts: dict[str, Any]
    runs: tuple[RunbookRun, ...]
    #: The probe's requests from the injection on: ``seconds`` since it, ``ok``.
    traffic: pd.DataFrame = field(repr=False, compare=False, default_factory=pd.DataFrame)

    def moments(self) -> pd.DataFrame:
        """Its moments as seconds since the injection (for :func:`labkit.lab.plots.drill_timeline`)."""
        rows = [("injected", 0.0), ("detected", self.time_to_detect_s), ("recovered", self.time_to_recover_s)]
        rows.append(("verified", self.time_to_verified_s))
        return pd.DataFrame(
            [{"drill": self.name, "moment": m, "seconds": s} for m, s in rows if s is not None]
        )

    def requests_frame(self) -> pd.DataFrame:
        """The probe's requests as (drill, seconds, ok) rows."""
        return self.traffic.assign(drill=self.name)[["drill", "seconds", "ok"]]

    def figures(self) -> dict[str, Any]:
        """The drill's figures as one table row."""
        return {
            "drill": self.name,
            "verified": self.verified,
            "detect_s": self.time_to_detect_s,
            "recover_s": self.time_to_recover_s,
            "verified_s": self.time_to_verified_s,
            "requests": self.requests,
            "failed": self.failed_requests,
            "lost_state_versions": self.lost_state_versions,
        }

    def lines(self) -> list[str]:
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        lost = "-" if self.lost_state_versions is None else str(self.lost_state_versions)
        return [
            f"drill {self.name} on {self.environment}: {'VERIFIED' if self.verified else 'NOT VERIFIED'}",
            f"  time to detect      {secs(self.time_to_detect_s)}",
            f"  time to recover     {secs(self.time_to_recover_s)}",
            f"  verified after      {secs(self.time_to_verified_s)}",
            f"  requests failed     {self.failed_requests} of {self.requests}",
            f"  state versions lost {lost}",
            f"  journal             {self.journal}",
        ]


def run_drill(
    name: str,
    target: Target,
    environment: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    confirm: str = "",
    probe_rate: float = 20.0,
    say: Callable[[str], None] = print,
) -> DrillReport:
    """Inject drill ``name`` into ``environment``, recover it with its runbook, verify it, measure it."""
    global _current
    from chaoslib.experiment import run_experiment

    from labkit.deploy.probe import Probe

    drill = get(name)
    _refuse_on_aws(name, target, environment, confirm)
    folder = runs_root() / "drills" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(environment, target)
    url = target.alb_url(str(stack.outputs()["alb_dns_name"]))
    before = state_identity(target, environment)
    spec = experiment(drill, environment, arguments)
    spec["configuration"]["labkit_target"] = target.name
    (folder / "experiment.json").write_text(json.dumps(spec, indent=2) + "\n")
    _current = _DrillRun(drill, target, environment, folder, say=say)
    probe = Probe(url, rate=probe_rate, max_duration=3600.0, allow_remote=not target.is_sandbox)
    try:
        with probe:
            journal: dict[str, Any] = run_experiment(spec)
        runs = tuple(_current.runs)
        facts = _current.facts
    finally:
        _current = None
    (folder / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n")
    after = state_identity(target, environment)
    return _report(drill, environment, folder, journal, probe, runs, facts, before, after)


def journal_verified(journal: Mapping[str, Any]) -> bool:
    """The experiment completed, every method step (the injection, each runbook run) succeeded, and
    the steady state held after it. chaoslib completes an experiment whose actions raised, and the
    steady state holds after an injection that never happened: neither alone verifies a drill."""
    steps = journal.get("run") or []
    steady_after = journal.get("steady_states", {}).get("after") or {}
    return (
        journal.get("status") == "completed"
        and not journal.get("deviated")
        and bool(steps)
        and all(step.get("status") == "succeeded" for step in steps)
        and bool(steady_after.get("steady_state_met"))
    )


def _report(
    drill: Drill,
    environment: str,
    folder: Path,
    journal: dict[str, Any],
    probe: Any,
    runs: tuple[RunbookRun, ...],
    facts: dict[str, Any],
    before: tuple[str, int] | None,
    after: tuple[str, int] | None,
) -> DrillReport:
    injected = _moment(journal["run"][0]["end"]) if journal.get("run") else None
    steady_after = journal.get("steady_states", {}).get("after") or {}
    verified = journal_verified(journal)
    after_probes = steady_after.get("probes") or []
    verified_at = _moment(after_probes[-1]["end"]) if verified and after_probes else None
    acted = next((r.record for r in runs if not r.record.dry_run), None)
    detected = next((r.record.detected_at for r in runs if r.record.detected_at), None)

    def since(moment: str | None) -> float | None:
        if injected is None or moment is None:
            return None
        return round(_moment(moment) - injected, 1)

    recovered = since(acted.finished_at if acted and acted.verified else None)
    verified_s = None if verified_at is None or injected is None else round(verified_at - injected, 1)
    results = probe.results()
    # The probe's ``time`` is a UTC timestamp; the journal's moments are epoch seconds.
    origin = pd.Timestamp(injected if injected is not None else 0.0, unit="s", tz="UTC")
    seconds = (results["time"] - origin).dt.total_seconds()
    traffic = pd.DataFrame({"seconds": seconds, "ok": results["ok"].astype(bool)})
    # From the injection to the recovery: a rebuilt load balancer answers on another address
    # (a new DNS name on AWS, a new loopback port here), so the probe's old URL fails for good.
    end = recovered if recovered is not None else float("inf")
    traffic = traffic[(traffic["seconds"] >= -0.001) & (traffic["seconds"] <= end)].reset_index(drop=True)
    failed = int((~traffic["ok"]).sum())
    return DrillReport(
        name=drill.name,
        environment=environment,
        verified=verified and (acted is None or acted.verified or drill.runbook is None),
        journal=folder / "journal.json",
        time_to_detect_s=since(detected),
        time_to_recover_s=recovered,
        time_to_verified_s=verified_s,
        requests=len(traffic),
        failed_requests=failed,
        lost_state_versions=lost_versions(before, after),
        facts=facts,
        runs=runs,
        traffic=traffic,
    )


def lost_versions(before: tuple[str, int] | None, after: tuple[str, int] | None) -> int | None:
    """State versions lost between two (lineage, serial) readings: none while the lineage is the
    same and the serial did not fall; every one of ``before`` when the state is gone or another
    lineage replaced it. None when there was no state before."""
    if before is None:
        return None
    if after is None or after[0] != before[0]:
        return before[1]
    return max(0, before[1] - after[1])


def _moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def state_fingerprint(target: Target, environment: str) -> tuple[str | None, bool]:
    """The state object's newest version id (a delete marker's included) and whether a state lock
    is held: a dry run must leave both as they were."""
    stack = Stack(environment, target)
    key = state_key(environment)
    listing = target.client("s3").list_object_versions(Bucket=stack.names.state_bucket, Prefix=key)
    latest = [
        entry["VersionId"]
        for entry in (*listing.get("Versions", []), *listing.get("DeleteMarkers", []))
        if entry["Key"] == key and entry.get("IsLatest")
    ]
    return (latest[0] if latest else None), stack.state_lock() is not None


def state_identity(target: Target, environment: str) -> tuple[str, int] | None:
    """The (lineage, serial) of the environment's state object as it is now, or None when it is
    missing or does not parse (what a corrupt-state drill leaves)."""
    try:
        state = Stack(environment, target).state()
        return str(state["lineage"]), int(state["serial"])
    except (StackError, KeyError, TypeError, ValueError):
        return None
