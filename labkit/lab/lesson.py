"""What the learning-path notebooks share: the guard cell, the lesson-order check, one request.

Each notebook's guard cell calls :func:`open_target` with its parameters; a notebook that needs what
an earlier one built calls :func:`require`, so opening ``06`` on an empty sandbox says "run
04 first" instead of failing deep inside Terraform.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit import sandbox
from labkit.errors import ConfigError, LessonOrderError, StackError
from labkit.infra.stack import Stack
from labkit.target import TARGET_NAMES, Target, get_target


def open_target(target: str, *, allow_spend: bool = False, aws_region: str | None = None) -> Target:
    """The guard cell: check a notebook's ``target`` parameters, start the sandbox when it is the
    target, and return the :class:`~labkit.target.Target` every later cell uses."""
    if not isinstance(target, str) or target not in TARGET_NAMES:
        raise ConfigError(
            f"target is {target!r}.",
            hint=f"Set target to one of: {', '.join(repr(n) for n in TARGET_NAMES)} "
            "(papermill: -p target sandbox).",
        )
    check_flag("allow_spend", allow_spend)
    if aws_region is not None and not isinstance(aws_region, str):
        raise ConfigError(f"aws_region is {aws_region!r}.", hint="Give a region name such as 'eu-west-1'.")
    aws_region = (aws_region or "").strip() or None  # empty: the profile's region
    if target == "sandbox":
        chosen = sandbox.target()
        where = f"the sandbox at {chosen.endpoint_url}"
    else:
        chosen = get_target("aws", region=aws_region, allow_spend=allow_spend)
        spend = "may create resources" if allow_spend else "read-only: allow_spend=False"
        where = f"AWS {chosen.region} ({spend})"
    print(f"target: {where}")
    return chosen


def require(
    stack: Stack, *, run_first: str, outputs: tuple[str, ...] = (), resources: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check that an earlier lesson built what this one needs: root ``outputs`` (written by full
    applies) and state ``resources`` (addresses, also built by targeted applies). Returns the
    outputs; raises :class:`LessonOrderError` naming the notebook ``run_first`` otherwise."""
    try:
        found = stack.outputs()
        addresses = stack.resources() if resources else []
    except StackError as exc:  # no state bucket: global was never applied
        raise LessonOrderError(
            f"{stack.env} cannot be read on {stack.target.name}: {exc.message}",
            hint=f"Run the lessons in order; this one needs {run_first} (and the ones before it).",
        ) from exc
    missing = [name for name in outputs if found.get(name) in (None, "", [], {})]
    missing += [address for address in resources if address not in addresses]
    if missing:
        raise LessonOrderError(
            f"{stack.env} on {stack.target.name} has no {', '.join(missing)} yet.",
            hint=f"Run {run_first} first (labkit run notebooks/{run_first}.ipynb).",
        )
    return found


def require_not_past(stack: Stack, *, this: str, expect: Mapping[str, Any]) -> None:
    """Refuse to re-run a building lesson on a stack that later lessons have moved on. ``expect``
    holds the deployment values (``stack.deployment()``) that this lesson's apply sets: when the
    stack has others, a later lesson changed them, and applying this lesson's would move traffic
    back to a color that may have no instances (after 06, blue is scaled down and green serves).
    A stack not built this far yet passes: :func:`require` checks what is missing."""
    deployment = stack.deployment()
    moved = {
        name: (deployment[name], wanted)
        for name, wanted in expect.items()
        if name in deployment and deployment[name] != wanted
    }
    if moved:
        changed = ", ".join(
            f"{name} is {now!r} (this lesson sets {wanted!r})" for name, (now, wanted) in moved.items()
        )
        raise LessonOrderError(
            f"{stack.env} on {stack.target.name} has moved past {this}: {changed}.",
            hint="A later lesson changed it, and re-running this one would move traffic back to a color "
            "that may have no instances. Continue from the lesson after the last one you ran, or start "
            "over: run 09-teardown, then the lessons from 01.",
        )


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: its status and body (parsed when it is JSON)."""

    status: int
    body: Any

    def field(self, name: str) -> Any:
        """A field of a JSON body (``color``, ``version``, ...), None for other bodies."""
        return self.body.get(name) if isinstance(self.body, dict) else None


def get(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> Answer:
    """One GET, e.g. through the load balancer; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    return Answer(status, body)


def check_number(name: str, value: object, low: float, high: float, *, whole: bool = False) -> None:
    """A guard-cell check of one numeric parameter: a number (a whole one with ``whole``) from
    ``low`` to ``high``; a :class:`ConfigError` naming it and the range otherwise."""
    kinds: tuple[type, ...] = (int,) if whole else (int, float)
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not isinstance(number, kinds) or not low <= number <= high:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"{name} is {value!r}.",
            hint=f"Use {kind} from {low:g} to {high:g} (papermill: -p {name} VALUE).",
        )


def check_flag(name: str, value: object) -> None:
    """A guard-cell check of one True/False parameter (papermill passes text when misquoted)."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"{name} is {value!r} ({type(value).__name__}), not True or False.",
            hint=f"Pass a boolean: -p {name} true (JSON) or True.",
        )


#: The order `labkit run` runs the lessons of a folder in (names without ``.ipynb``; others follow,
#: by name). 10 and 11 work on the stack that 08 leaves serving, so they run before 09 tears it down:
#: built again after 09, global and staging would cost them about 135 s (the AWS provider waits 60 s
#: for a new load balancer and 56 s for each bucket's lifecycle rules). 12 builds staging with its
#: database from nothing after 09, and tears it down itself. Each lesson also runs on its own.
PATH_ORDER = (
    "00-welcome-and-setup",
    "01-state-backend",
    "02-network",
    "03-load-balancer",
    "04-blue-fleet",
    "05-green-release",
    "06-traffic-shifting",
    "07-automated-rollback",
    "08-timing-and-cost",
    "10-disaster-drills",
    "11-ci-cd-and-identity",
    "09-teardown",
    "12-database-migrations",
)


def in_path_order(notebooks: list[Path]) -> list[Path]:
    """``notebooks`` in :data:`PATH_ORDER`, any notebook it does not name after them, by name."""
    rank = {name: index for index, name in enumerate(PATH_ORDER)}
    return sorted(notebooks, key=lambda p: (rank.get(p.stem, len(rank)), p.name))


#: What a lesson that needs a serving staging builds: blue serves 1.0.0 on two instances.
SERVING_STAGING = {
    "blue_version": "1.0.0",
    "green_version": "1.0.0",
    "blue_capacity": 2,
    "green_capacity": 0,
    "green_weight": 0,
}


def ensure_staging(
    target: Target,
    *,
    say: Callable[[str], None] = print,
    global_variables: Mapping[str, Any] | None = None,
    builder: Callable[[Target], Target] | None = None,
    staging: Mapping[str, Any] = SERVING_STAGING,
) -> dict[str, Any]:
    """Build what a self-contained lesson needs, or keep what is there: ``global`` (applied with
    ``global_variables``), release 1.0.0 in the artifact bucket, and staging applied with
    ``staging`` (default :data:`SERVING_STAGING`: blue serves 1.0.0) once blue is healthy. On a
    stack that already serves, every apply is a no-change apply. Returns staging's outputs.

    ``builder``, given ``target`` once global is applied, returns the identity that uploads the
    release and builds staging, as CI's deploy role does (global stays an admin's: the role may not
    change it); by default ``target`` does it all."""
    from labkit.deploy.health import wait_healthy
    from labkit.release.build import build_release, release_exists, upload_release

    glob = Stack("global", target)
    say("applying global ...")
    glob.apply(global_variables)
    target = builder(target) if builder is not None else target
    bucket = glob.names.artifact_bucket
    if not release_exists(target, bucket, "1.0.0"):
        say("building and uploading release 1.0.0 ...")
        upload_release(target, bucket, build_release("1.0.0"), "1.0.0")
    wanted = int(staging["blue_capacity"])
    say(f"applying staging (blue serves {staging['blue_version']} on {wanted} instance(s)) ...")
    outputs = Stack("staging", target).apply(staging).outputs
    healthy, report, waited = wait_healthy(
        target,
        asg_name=str(outputs["blue_asg_name"]),
        target_group_arn=str(outputs["blue_target_group_arn"]),
        wanted=wanted,
        timeout_s=180,
        say=lambda _: None,
    )
    if not healthy:
        raise StackError(
            f"staging's blue fleet is not healthy after {waited:.0f} s: {report}",
            hint="`labkit deploy status staging` shows the fleets, and `labkit sandbox logs` the instances.",
        )
    say(f"staging serves ({waited:.0f} s for the fleet to turn healthy)")
    return dict(outputs)


def ensure_serving(target: Target, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Staging as the earlier lessons left it when its load balancer answers 200 (nothing applied:
    whichever color serves, the lesson uses it as it is); otherwise what :func:`ensure_staging`
    builds. Returns staging's outputs."""
    outputs = Stack("staging", target).outputs() if Stack("global", target).outputs() else {}
    dns = outputs.get("alb_dns_name")
    if dns:
        url = target.alb_url(str(dns))
        try:
            answer = get(url)
        except OSError as exc:  # refused or timed out: not serving, so build below
            answer = Answer(0, str(exc))
        if answer.status == 200:
            say(f"staging serves: {answer.field('color')} {answer.field('version')} answers at {url}")
            return dict(outputs)
        say(f"staging's load balancer answers {answer.status or answer.body}: building it to serve")
    return ensure_staging(target, say=say)
