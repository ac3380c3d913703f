"""Saved Terraform plans as artifacts: a plan file plus a JSON sidecar that says what it was made from.

A plan saved with ``terraform plan -out`` is applied later, maybe by someone else, maybe after
another plan was applied: the seed's "tfplan files overwritten by concurrent developer pushes". So
:func:`save_plan` names each plan by environment, commit and time (never one shared ``tfplan``) and
writes beside it ``<plan>.json``::

    {"environment": "staging", "target": "sandbox", "commit": "3f2a...", "dirty": false,
     "state_serial": 12, "state_lineage": "9c1e...", "sha256": "...", "variables": {...},
     "created_at": "2026-12-02T14:05:09Z", "summary": "0 to add, 1 to change, 0 to destroy"}

and :func:`apply_saved_plan` applies it only while all of that still holds: the file's checksum,
the checkout's commit (git HEAD of the project; ``unknown`` outside git) and the state's serial and
lineage. Otherwise it raises :class:`labkit.errors.StalePlanError` naming what changed. The serial
and lineage come from the prior state Terraform stores inside the plan file itself, so they are
exactly what the plan was made against. Terraform's own last check ("Saved plan is stale", should
the state move between labkit's check and the apply) raises the same error.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import StalePlanError, TerraformError
from labkit.settings import PROJECT_ROOT

if TYPE_CHECKING:  # Stack imports nothing from here; the type only documents the argument
    from collections.abc import Mapping

    from labkit.infra.stack import Stack
    from labkit.infra.terraform import ApplyResult, PlanResult

#: Where ``labkit stack plan ENV --out`` keeps plans when given no file name (git-ignored).
PLANS_DIR = PROJECT_ROOT / "runs" / "plans"
#: The commit recorded when the project is not a git checkout (or git is not installed).
UNKNOWN_COMMIT = "unknown"
#: Terraform's summary of its own staleness check on a saved plan.
TERRAFORM_STALE = "Saved plan is stale"
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class PlanRecord:
    """What a saved plan was made from: the sidecar's content."""

    environment: str
    target: str
    commit: str
    sha256: str
    state_serial: int
    state_lineage: str
    variables: dict[str, Any]
    created_at: str
    summary: str
    has_changes: bool
    #: The checkout had uncommitted changes: the plan's code may be in no commit at all.
    dirty: bool = False
    format: int = SIDECAR_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class SavedPlan:
    """A plan file, its record, and the parsed plan."""

    path: Path
    record: PlanRecord
    plan: PlanResult


def sidecar_path(plan_file: Path) -> Path:
    """``staging-3f2a1b9-20261202T140509Z.tfplan`` -> ``...tfplan.json``."""
    return plan_file.with_name(plan_file.name + ".json")


def git_commit(repo: Path = PROJECT_ROOT) -> str:
    """The full commit id of ``repo``'s HEAD, or ``unknown`` outside git."""
    return _git(repo, "rev-parse", "HEAD") or UNKNOWN_COMMIT


def git_dirty(repo: Path = PROJECT_ROOT) -> bool:
    """Whether ``repo`` has uncommitted changes under ``terraform/`` (what a plan is made from)."""
    return bool(_git(repo, "status", "--porcelain", "--", "terraform"))


def commit_subject(commit: str, repo: Path = PROJECT_ROOT) -> str:
    """``3f2a1b9 (Raise green's capacity)``, or just the id when git does not know it."""
    if commit == UNKNOWN_COMMIT:
        return commit
    subject = _git(repo, "log", "-1", "--format=%s", commit)
    return f"{commit[:7]} ({subject})" if subject else commit[:7]


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def default_plan_path(env: str, commit: str, now: datetime | None = None) -> Path:
    """``runs/plans/<env>-<short commit>-<UTC time>.tfplan``: two plans never share a name."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return PLANS_DIR / f"{env}-{commit[:7]}-{stamp}.tfplan"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prior_state(plan_file: Path) -> tuple[int, str]:
    """The serial and lineage of the state a plan was made against, from the plan file itself
    (Terraform stores that state in it as ``tfstate``; an environment never applied has serial 0)."""
    try:
        with zipfile.ZipFile(plan_file) as archive:
            state = json.loads(archive.read("tfstate"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise StalePlanError(
            f"{plan_file} is not a Terraform plan file ({exc}).",
            hint="Make a plan with `labkit stack plan ENV --out` and apply that file.",
        ) from exc
    return int(state.get("serial") or 0), str(state.get("lineage") or "")


def current_state(stack: Stack) -> tuple[int, str]:
    """The serial and lineage of the environment's state as stored now (0 and "" when empty)."""
    state = stack.state()
    return int(state.get("serial") or 0), str(state.get("lineage") or "")


def save_plan(
    stack: Stack,
    variables: Mapping[str, Any] | None = None,
    *,
    out: Path | None = None,
    repo: Path = PROJECT_ROOT,
) -> SavedPlan:
    """Plan ``variables`` on ``stack`` into ``out`` (default: :func:`default_plan_path`) and write
    its sidecar. ``repo`` is the checkout whose commit the plan is made from."""
    commit = git_commit(repo)
    path = (out or default_plan_path(stack.env, commit)).resolve()
    if path.exists():
        raise StalePlanError(
            f"Refusing to overwrite the saved plan {path}: someone may be about to apply it.",
            hint="Give a new file name, or leave --out without one (runs/plans/ names each plan by "
            "environment, commit and time).",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = stack.plan(variables, out=path)
    serial, lineage = prior_state(path)
    record = PlanRecord(
        environment=stack.env,
        target=stack.target.name,
        commit=commit,
        dirty=git_dirty(repo),
        sha256=sha256_file(path),
        state_serial=serial,
        state_lineage=lineage,
        variables={name: spec.get("value") for name, spec in plan.raw.get("variables", {}).items()},
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        summary=plan.summary(),
        has_changes=plan.has_changes,
    )
    sidecar_path(path).write_text(record.to_json())
    return SavedPlan(path=path, record=record, plan=plan)


def read_record(plan_file: Path) -> PlanRecord:
    """The sidecar of ``plan_file``; StalePlanError when it is missing or unreadable."""
    sidecar = sidecar_path(plan_file)
    try:
        data = json.loads(sidecar.read_text())
        return PlanRecord(**data)
    except FileNotFoundError as exc:
        raise StalePlanError(
            f"{plan_file} has no sidecar {sidecar.name}: nothing says which commit and state it was made "
            "from, so labkit will not apply it.",
            hint="Make the plan with `labkit stack plan ENV --out`, which writes both.",
        ) from exc
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise StalePlanError(
            f"The sidecar {sidecar} cannot be read ({exc}).",
            hint="Make a new plan with `labkit stack plan ENV --out`.",
        ) from exc


@dataclass(frozen=True)
class Checkout:
    """What a saved plan is checked against at apply time."""

    sha256: str  # of the plan file as it is now
    environment: str
    target: str
    commit: str  # the checkout's HEAD
    state_serial: int
    state_lineage: str


def what_changed(record: PlanRecord, now: Checkout, *, repo: Path = PROJECT_ROOT) -> list[str]:
    """Everything that differs between what the plan was made from and ``now``, one phrase each."""
    changed: list[str] = []
    if now.sha256 != record.sha256:
        changed.append(
            f"the file is not the plan that was saved (sha256 {now.sha256[:12]}..., saved as "
            f"{record.sha256[:12]}...): it was overwritten or altered"
        )
    if (record.environment, record.target) != (now.environment, now.target):
        changed.append(
            f"it was made for {record.environment} on {record.target}, not {now.environment} on {now.target}"
        )
    if record.commit != now.commit:
        changed.append(
            f"it was made from commit {commit_subject(record.commit, repo)}, and the checkout is now at "
            f"{commit_subject(now.commit, repo)}"
        )
    if (now.state_serial, now.state_lineage) != (record.state_serial, record.state_lineage):
        moved = (
            f"serial {record.state_serial} -> {now.state_serial}"
            if now.state_lineage == record.state_lineage
            else f"lineage {record.state_lineage or '(none)'} -> {now.state_lineage or '(none)'}"
        )
        changed.append(f"the state of {now.environment} changed since it was planned ({moved})")
    return changed


def check_saved_plan(stack: Stack, plan_file: Path, *, repo: Path = PROJECT_ROOT) -> PlanRecord:
    """The plan's record, if the plan may still be applied to ``stack``; else StalePlanError saying
    everything that changed since it was made (see :func:`what_changed`)."""
    plan_file = plan_file.resolve()
    if not plan_file.is_file():
        raise StalePlanError(
            f"There is no plan file {plan_file}.",
            hint="`ls runs/plans/` lists the saved plans; `labkit stack plan ENV --out` makes one.",
        )
    record = read_record(plan_file)
    serial, lineage = current_state(stack)
    now = Checkout(
        sha256=sha256_file(plan_file),
        environment=stack.env,
        target=stack.target.name,
        commit=git_commit(repo),
        state_serial=serial,
        state_lineage=lineage,
    )
    changed = what_changed(record, now, repo=repo)
    if changed:
        raise StalePlanError(
            f"Refusing to apply {plan_file.name} to {stack.env}: " + "; ".join(changed) + ".",
            hint=f"Nothing was applied. Make a new plan from the current checkout and state "
            f"(`labkit stack plan {stack.env} --out`), review it, then apply that file.",
        )
    return record


def apply_saved_plan(stack: Stack, plan_file: Path, *, repo: Path = PROJECT_ROOT) -> ApplyResult:
    """Apply ``plan_file`` to ``stack`` exactly as planned, once :func:`check_saved_plan` passes."""
    record = check_saved_plan(stack, plan_file, repo=repo)
    return run_saved_plan(stack, plan_file.resolve(), record)


def run_saved_plan(stack: Stack, plan_file: Path, record: PlanRecord) -> ApplyResult:
    """Terraform's apply of the plan file, its "Saved plan is stale" as a StalePlanError."""
    try:
        return stack.apply_plan(plan_file, variables=record.variables)
    except TerraformError as exc:
        if TERRAFORM_STALE not in str(exc):
            raise
        raise StalePlanError(
            f"Terraform refused {plan_file.name}: {TERRAFORM_STALE.lower()}, the state of {stack.env} "
            f"changed after the plan was made (it was planned against serial {record.state_serial}).",
            hint=f"Nothing was applied. Make a new plan (`labkit stack plan {stack.env} --out`) and apply "
            "that one.",
        ) from exc
