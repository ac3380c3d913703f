"""Drill ``stale-plan``: a saved plan applied after a newer one (the seed's "tfplan files overwritten
by concurrent developer pushes").

Two developers plan the same environment from two commits. The injection, with real commits,
plans and applies:

1. a clone of the project at its HEAD (commit X): developer A saves a plan (``preview_color``
   green) and leaves for lunch;
2. developer B pushes commit Y (an empty commit in the clone: the Terraform code is the same, the
   commit is not), saves a plan of another value (``preview_color`` blue) and applies it, so the
   state's serial moves;
3. developer A comes back and applies the older plan.

labkit refuses step 3 (:func:`labkit.infra.planfile.apply_saved_plan`): the plan was made from X
while the checkout is at Y, against a serial that has moved. Nothing is applied; what to do is to
make a new plan. There is no runbook: the refusal is the recovery, and the drill's check is that it
happened and the state is the one B's apply left.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from labkit.errors import DrillError, StalePlanError
from labkit.infra.planfile import (
    PLANS_DIR,
    apply_saved_plan,
    check_saved_plan,
    current_state,
    git_commit,
    read_record,
    save_plan,
    sidecar_path,
)
from labkit.infra.stack import APP_ENVIRONMENTS, Stack
from labkit.infra.terraform import Terraform
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.settings import PROJECT_ROOT
from labkit.target import Target

#: Developer A's change, planned first and applied last. (green is what null means while blue
#: serves: the plan changes only the deployment output.)
OLDER_CHANGE = {"preview_color": "green"}
#: Developer B's change, planned from the newer commit and applied first: the preview rule moves.
#: A deployment variable, so the deployment carries it over and the steady state's plan is empty.
NEWER_CHANGE = {"preview_color": "blue"}


def clone_checkout(into: Path, repo: Path = PROJECT_ROOT) -> Path:
    """A clone of ``repo`` at its HEAD commit holding only ``terraform/`` (sharing its objects)."""
    commit = git_commit(repo)
    if commit == "unknown":
        raise DrillError(
            f"stale-plan needs the project as a git checkout; {repo} is not one.",
            hint="Run the drill from a clone of the repository.",
        )
    checkout = into / "checkout"
    for args in (
        ["clone", "--quiet", "--shared", "--no-checkout", str(repo), str(checkout)],
        ["-C", str(checkout), "sparse-checkout", "set", "terraform"],
        ["-C", str(checkout), "checkout", "--quiet", "--detach", commit],
    ):
        _git(*args)
    return checkout


def push_commit(checkout: Path, message: str) -> str:
    """Another developer's commit on ``checkout`` (empty: the code stays the same); its id."""
    _git(
        "-C", str(checkout), "-c", "user.name=labkit drill", "-c", "user.email=drill@labkit.invalid",
        "commit", "--quiet", "--allow-empty", "-m", message,
    )  # fmt: skip
    return git_commit(checkout)


def _git(*args: str) -> None:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise DrillError(
            f"git {' '.join(args[:3])} failed: {proc.stderr.strip()}",
            hint="The drill needs git on PATH and the project as a git checkout.",
        )


def stack_in(checkout: Path, environment: str, target: Target) -> Stack:
    """``environment`` planned from ``checkout``'s Terraform code instead of this one's. It shares
    the environment's Terraform data dir: the same providers and backend, and the modules are
    local paths relative to the root, so the next ``init`` of either root finds what it needs."""
    stack = Stack(environment, target)
    stack.root = checkout / "terraform" / "environments" / environment
    stack.terraform = Terraform(
        stack.root, target=target, data_dir=stack.terraform.data_dir, reporter=stack.reporter
    )
    return stack


def inject(target: Target, environment: str, **arguments: Any) -> dict[str, Any]:
    """Plan from commit X, plan and apply from commit Y, then apply X's plan: refused. Its facts."""
    if environment not in APP_ENVIRONMENTS:
        raise DrillError(
            f"stale-plan plans an application environment, not {environment}.", hint="Use staging."
        )
    with tempfile.TemporaryDirectory(prefix="labkit-stale-plan-") as tmp:
        checkout = clone_checkout(Path(tmp))
        stack = stack_in(checkout, environment, target)
        older = save_plan(stack, OLDER_CHANGE, repo=checkout)
        newer_commit = push_commit(checkout, "drill: another developer's push")
        newer = save_plan(stack, NEWER_CHANGE, repo=checkout)
        apply_saved_plan(stack, newer.path, repo=checkout)
        serial_after_newer, lineage = current_state(stack)
        try:
            apply_saved_plan(stack, older.path, repo=checkout)
        except StalePlanError as exc:
            refusal = exc.message
        else:
            raise DrillError(
                f"The older plan {older.path.name} was applied after the newer one: saved plans are not "
                "checked.",
                hint="This is the bug the drill looks for; see labkit.infra.planfile.check_saved_plan.",
            )
        serial_now, lineage_now = current_state(stack)
    return {
        "older_plan": str(older.path),
        "older_commit": older.record.commit,
        "newer_plan": str(newer.path),
        "newer_commit": newer_commit,
        "serial_planned_against": older.record.state_serial,
        "serial_after_newer_apply": serial_after_newer,
        "serial_after_refusal": serial_now,
        "state_unchanged_by_refusal": (serial_now, lineage_now) == (serial_after_newer, lineage),
        "refusal": refusal,
    }


def older_plans_refused(target: Target, environment: str) -> Check:
    """Every saved plan of ``environment`` in runs/plans/ made against another state serial than
    the current one is refused, with nothing applied (the state's serial does not move)."""
    stack = Stack(environment, target, reporter=None)
    serial, _ = current_state(stack)
    stale = [
        plan
        for plan in sorted(PLANS_DIR.glob(f"{environment}-*.tfplan"))
        if sidecar_path(plan).exists()
        and _record_for(plan, target.name)
        and read_record(plan).state_serial != serial
    ]
    if not stale:
        return False, f"no saved plan of {environment} made against an older state in {PLANS_DIR}"
    for plan in stale[-3:]:  # the newest few: each check reads the state once
        try:
            check_saved_plan(stack, plan)
        except StalePlanError:
            continue
        return False, f"{plan.name} (made against serial {read_record(plan).state_serial}) passed the check"
    after, _ = current_state(stack)
    if after != serial:
        return False, f"the state's serial moved from {serial} to {after} while checking"
    return True, f"{min(len(stale), 3)} older plan(s) refused; state serial still {serial}"


def _record_for(plan: Path, target_name: str) -> bool:
    try:
        return bool(json.loads(sidecar_path(plan).read_text()).get("target") == target_name)
    except (OSError, ValueError):
        return False


DRILL = Drill(
    name="stale-plan",
    summary="a saved plan from an older commit applied after a newer plan moved the state",
    inject=inject,
    runbook=None,
    checks={"older-plans-refused": older_plans_refused},
)
