"""Rebuild an environment that was destroyed (the ``restore-environment`` runbook's logic).

The runbook's steps, each a function here:

- :func:`diagnose`: which deployment to rebuild (:func:`last_good_deployment`), what a plan of it
  would create or change (the resources missing from state compared with the code), and whether
  the load balancer answers with the versions that deployment serves.
- :func:`rebuild`: ``Stack.apply`` of exactly that deployment, then the wait until every fleet
  with capacity is healthy in its target group.
- :func:`serves_as` and :func:`no_change_plan`: the checks of the Verify section.

Which deployment: the newer of two records, and the runbook says which one it took and why.

1. The ledger's newest ``succeeded`` deployment of the environment: the new color on its release
   at the deployment's final weight, with the capacity its ``provision`` event records; the old
   color on its previous release, parked (a successful deployment ends with its scale-down).
2. The last deployment Terraform applied: the ``deployment`` output of the newest version of the
   environment's state object (the state bucket keeps every version) that still held resources.
   It covers what the ledger never sees: ``labkit stack apply ENV --var NAME=VALUE`` outside a deployment.

With neither, there is nothing to rebuild from and :class:`labkit.errors.RestoreError` says so; the
runbook's ``deployment`` parameter then names the versions, capacities and weight to use.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from labkit.deploy.colors import COLORS, Layout, as_color, green_weight_for
from labkit.deploy.health import wait_for_fleets
from labkit.deploy.ledger import Deployment, Ledger
from labkit.deploy.probe import Probe
from labkit.errors import RestoreError
from labkit.infra.stack import Stack, state_key
from labkit.infra.terraform import ApplyResult
from labkit.ops.state import parse_state

#: The deployment variables a rebuild sets (the ``deployment`` output's keys that Terraform takes).
DEPLOYMENT_KEYS = ("blue_version", "green_version", "blue_capacity", "green_capacity", "green_weight")
#: Deployment variables rebuilt when the record has them (null: the idle color, the default).
OPTIONAL_KEYS = ("preview_color",)
#: The controller's record of a provision: ``"green 1.1.0 x2"`` (labkit.deploy.controller).
_PROVISION = re.compile(r"^(?P<color>blue|green) (?P<version>\S+) x(?P<capacity>\d+)$")
#: State versions read back, newest first, to find the last one that held a deployment.
STATE_VERSIONS_READ = 50
#: What :attr:`Diagnosis.missing` holds when the state has no resources at all.
EVERYTHING = "every resource the code declares (the state holds none)"
#: How long a rebuild waits for the fleets by default.
WAIT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LastGood:
    """The deployment to rebuild and where it comes from."""

    variables: dict[str, Any]
    source: str
    #: When that deployment was made (None: given by hand).
    at: datetime | None = None
    #: What the other record said, when it disagrees (the runbook prints it).
    note: str = ""

    def describe(self) -> str:
        layout = Layout.from_outputs(self.variables)
        return f"{layout.describe()} (from {self.source})" + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class Diagnosis:
    """What is missing from an environment, compared with the code and its last good deployment."""

    environment: str
    last_good: LastGood
    in_state: int
    missing: list[str] = field(default_factory=list)
    changing: list[str] = field(default_factory=list)
    alb_serves: bool = False
    alb_detail: str = ""

    @property
    def summary(self) -> str:
        """The plan's part for the Plan step: what a rebuild creates and changes."""
        if self.missing == [EVERYTHING]:
            return "everything, from nothing"
        return f"{len(self.missing)} resources to create, {len(self.changing)} to change"

    @property
    def complete(self) -> bool:
        """Every resource the code declares exists as planned, and the load balancer serves."""
        return not self.missing and not self.changing and self.alb_serves

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        planned = (
            "nothing to plan against: it is all missing"
            if self.missing == [EVERYTHING]
            else f"a plan of the last good deployment creates {len(self.missing)} and changes "
            f"{len(self.changing)}"
        )
        lines = [
            f"{self.environment}: {self.in_state} resources in state; {planned}.",
            f"Last good deployment: {self.last_good.describe()}.",
            f"Load balancer: {self.alb_detail}",
        ]
        if self.missing:
            shown = ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
            lines.append(f"Missing: {shown}")
        if self.changing:
            lines.append(f"Would change: {', '.join(self.changing)}")
        lines.append("Complete: nothing to restore." if self.complete else "Incomplete: it needs a rebuild.")
        return "\n".join(lines)


def ledger_last_good(ledger: Ledger, env: str) -> LastGood | None:
    """The final layout of ``env``'s newest succeeded deployment, or None when it has none (or the
    ledger does not record the capacity it provisioned)."""
    record: Deployment | None = next((d for d in ledger.list(env) if d.status == "succeeded"), None)
    if record is None:
        return None
    capacity = next(
        (
            int(match["capacity"])
            for event in ledger.events(record.id)
            if event.phase == "provision" and (match := _PROVISION.match(event.detail or ""))
        ),
        None,
    )
    if capacity is None:
        return None
    to, old = as_color(record.to_color), as_color(record.from_color)
    variables: dict[str, Any] = {
        f"{to}_version": record.version,
        f"{to}_capacity": capacity,
        f"{old}_version": record.from_version or record.version,
        f"{old}_capacity": 0,
        "green_weight": green_weight_for(to, record.weight),
    }
    return LastGood(
        variables=variables,
        source=f"the ledger: deployment {record.id} of {record.version} on {to}, succeeded",
        at=record.ended_at or record.updated_at,
    )


def kept_states(stack: Stack, limit: int = STATE_VERSIONS_READ) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """(saved at, state) for the newest ``limit`` versions of ``stack``'s state object, newest
    first; versions that are not a state (as :func:`labkit.ops.state.parse_state` reads them) are
    skipped: they are restore-state's business."""
    s3 = stack.target.client("s3")
    bucket, key = stack.names.state_bucket, state_key(stack.env)
    try:
        listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
    except ClientError as exc:
        raise RestoreError(
            f"Cannot list the versions of s3://{bucket}/{key}: {exc}.",
            hint="Check that the target is reachable and the state bucket exists (`labkit doctor`).",
        ) from exc
    versions = sorted(
        (v for v in listed.get("Versions", []) if v["Key"] == key),
        key=lambda v: v["LastModified"],
        reverse=True,
    )
    for version in versions[:limit]:
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
        # restore-state's reading of a version: garbage, truncated and foreign JSON are not states.
        if parse_state(body).kind == "state":
            yield version["LastModified"], json.loads(body)


def applied_deployment(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The deployment a state records, when it holds resources and a whole ``deployment`` output
    (``preview_color`` too when it was set)."""
    deployment = ((state.get("outputs") or {}).get("deployment") or {}).get("value") or {}
    if state.get("resources") and all(deployment.get(k) is not None for k in DEPLOYMENT_KEYS):
        return {k: deployment[k] for k in (*DEPLOYMENT_KEYS, *OPTIONAL_KEYS) if deployment.get(k) is not None}
    return None


def state_last_applied(stack: Stack) -> LastGood | None:
    """The ``deployment`` output of the newest version of ``stack``'s state object that held
    resources, or None when no version kept does."""
    for saved_at, state in kept_states(stack):
        if (deployment := applied_deployment(state)) is not None:
            return LastGood(
                variables=deployment,
                source=f"the state as last applied (serial {state.get('serial')}, "
                f"{saved_at:%Y-%m-%d %H:%M:%S} UTC)",
                at=saved_at,
            )
    return None


def last_good_deployment(stack: Stack, override: Mapping[str, Any] | None = None) -> LastGood:
    """The deployment to rebuild ``stack`` with: ``override`` when given, else the newer of the
    ledger's and the state's records (see the module's docstring); RestoreError with neither."""
    if override:
        variables = dict(override)
        missing = [k for k in DEPLOYMENT_KEYS if variables.get(k) is None]
        if missing:
            raise RestoreError(
                f"The deployment given lacks {', '.join(missing)}.",
                hint='Give all of them, e.g. -p deployment \'{"blue_version": "1.0.0", "green_version": '
                '"1.0.0", "blue_capacity": 2, "green_capacity": 0, "green_weight": 0}\'.',
            )
        keys = (*DEPLOYMENT_KEYS, *OPTIONAL_KEYS)
        return LastGood(
            variables={k: variables[k] for k in keys if variables.get(k) is not None},
            source="the runbook's parameter",
        )
    ledger = ledger_last_good(Ledger(stack.target, stack.names.ledger_table), stack.env)
    state = state_last_applied(stack)
    if ledger is None and state is None:
        raise RestoreError(
            f"Nothing records a deployment of {stack.env}: the ledger holds no succeeded deployment and "
            "no kept version of its state held one.",
            hint='Name the deployment to rebuild: -p deployment \'{"blue_version": "1.0.0", "green_version": '
            '"1.0.0", "blue_capacity": 2, "green_capacity": 0, "green_weight": 0}\'.',
        )
    if ledger is None or state is None:
        chosen = ledger or state
        assert chosen is not None
        return chosen
    newer, older = (state, ledger) if (state.at and ledger.at and state.at > ledger.at) else (ledger, state)
    if newer.variables == older.variables:
        return newer
    said = Layout.from_outputs(older.variables).describe()
    note = f"{older.source} says {said}, but this was applied later"
    return LastGood(variables=newer.variables, source=newer.source, at=newer.at, note=note)


def alb_answers(stack: Stack, outputs: Mapping[str, Any], timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether the load balancer in ``outputs`` answers ``/`` with 200."""
    dns = outputs.get("alb_dns_name")
    if not dns:
        return False, "no load balancer in state (no alb_dns_name output)."
    try:
        url = stack.target.alb_url(str(dns))
    except Exception as exc:  # the sandbox maps only load balancers it still has
        return False, f"{dns} has no address: {str(exc).splitlines()[0]}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{dns} answers {response.status}."
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{dns} does not answer: {exc}."


def diagnose(stack: Stack, override: Mapping[str, Any] | None = None) -> Diagnosis:
    """Read only: the last good deployment, a plan of it, and the load balancer's answer."""
    last = last_good_deployment(stack, override)
    in_state = [a for a in stack.resources() if not a.startswith("data.") and ".data." not in a]
    if not in_state:
        # Everything is missing: a plan would only list the code's resources, at the cost of one.
        return Diagnosis(
            environment=stack.env,
            last_good=last,
            in_state=0,
            missing=[EVERYTHING],
            alb_detail="no resources in state, so no load balancer.",
        )
    plan = stack.plan(last.variables)
    missing = [c.address for c in plan.changes if c.action == "create"]
    changing = [f"{c.address} ({c.action})" for c in plan.changes if c.action != "create"]
    serves, detail = alb_answers(stack, stack.outputs())
    if serves:
        ok, detail = serves_as(stack, last.variables)
        serves = ok
    return Diagnosis(
        environment=stack.env,
        last_good=last,
        in_state=len(in_state),
        missing=missing,
        changing=changing,
        alb_serves=serves,
        alb_detail=detail,
    )


def rebuild(
    stack: Stack,
    variables: Mapping[str, Any],
    *,
    wait_timeout_s: float = WAIT_TIMEOUT_S,
    say: Callable[[str], None] = print,
) -> ApplyResult:
    """Apply exactly ``variables`` (the last good deployment), then wait until the fleets serve."""
    keys = (*DEPLOYMENT_KEYS, *OPTIONAL_KEYS)
    result = stack.apply({k: variables.get(k) for k in keys})
    wait_for_fleets(stack.target, result.outputs, timeout_s=wait_timeout_s, say=say)
    return result


def serves_as(stack: Stack, variables: Mapping[str, Any], *, requests: int = 40) -> tuple[bool, str]:
    """Whether the load balancer serves ``variables``' deployment: its listener's weights are the
    deployment's, and ``requests`` GETs through it all succeed, each from a color that has weight,
    on that color's release."""
    outputs = stack.outputs()
    if not outputs.get("alb_dns_name"):
        return False, "no load balancer in state."
    layout = Layout.from_outputs(variables)
    weights = listener_weights(stack, outputs)
    wanted = {color: layout.weight(color) for color in COLORS}
    if weights != wanted:
        return False, f"the listener forwards {weights}, the deployment says {wanted}."
    url = stack.target.alb_url(str(outputs["alb_dns_name"]))
    probe = Probe(url, rate=max(requests, 1), duration=1.0, allow_remote=not stack.target.is_sandbox).start()
    probe.wait(timeout=30)
    frame = probe.results()
    answered = {(str(c), str(v)) for c, v in zip(frame["color"], frame["version"], strict=True)}
    expected = {(c, layout.versions[c]) for c in COLORS if layout.weight(c) > 0}
    failed = int((~frame["ok"]).sum())
    if failed or not len(frame) or not answered <= expected:
        return False, (
            f"{failed} of {len(frame)} requests failed; answers from {sorted(answered)}, "
            f"expected {sorted(expected)}."
        )
    return True, f"{len(frame)} requests all answered by {sorted(answered)}; listener weights {weights}."


def listener_weights(stack: Stack, outputs: Mapping[str, Any]) -> dict[str, int]:
    """Each color's weight in the listener's default forward, as the load balancer reports it."""
    listener = stack.target.client("elbv2").describe_listeners(ListenerArns=[str(outputs["listener_arn"])])
    groups = listener["Listeners"][0]["DefaultActions"][0].get("ForwardConfig", {}).get("TargetGroups", [])
    by_arn = {str(outputs[f"{c}_target_group_arn"]): c for c in COLORS}
    return {
        by_arn[g["TargetGroupArn"]]: int(g.get("Weight", 0)) for g in groups if g["TargetGroupArn"] in by_arn
    }


def no_change_plan(stack: Stack, *, diagnosed: Diagnosis | None = None) -> tuple[bool, str]:
    """Whether a plan of the deployment as applied changes nothing. ``diagnosed``: a diagnosis made
    moments ago, after which nothing was done; its plan answers, when it found nothing to change."""
    if diagnosed is not None and diagnosed.complete:
        return True, "the diagnosis's plan, moments ago, had no changes and nothing was done since"
    plan = stack.plan()
    return not plan.has_changes, plan.summary()
