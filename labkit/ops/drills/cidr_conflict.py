"""Drill ``cidr-conflict``: someone plans another environment with a VPC range that overlaps this
one's, as when production is copied from staging's settings. The plan is refused before anything is
created, with a message that names both environments and both ranges: the root's ``vpc_cidr``
output has a precondition against the other environments' ranges, which labkit reads from their
states (:meth:`labkit.infra.stack.Stack.other_vpc_cidrs`).

There is no runbook: the refusal is the lesson, and :func:`inject` raises a DrillError unless the
plan was refused as above and the other environment's state is still as it was.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from labkit.errors import DrillError, TerraformError
from labkit.infra.stack import APP_ENVIRONMENTS, Stack
from labkit.ops.drills import Drill
from labkit.target import Target


def overlapping_range(cidr: str) -> str:
    """A range inside ``cidr`` that is not ``cidr`` itself (its upper half), so that the overlap is
    a real one, not a copy of the same string."""
    network = ipaddress.ip_network(cidr)
    return str(list(network.subnets(prefixlen_diff=1))[1])


def inject(target: Target, environment: str, *, other: str = "") -> dict[str, Any]:
    """Plan ``other`` (the other app environment by default) with ``environment``'s deployment and
    a VPC range inside ``environment``'s; what Terraform said (raises DrillError unless the plan
    was refused)."""
    other = other or next(env for env in APP_ENVIRONMENTS if env != environment)
    ours = Stack(environment, target, reporter=None)
    cidr = ours.outputs().get("vpc_cidr")
    if not isinstance(cidr, str):
        raise DrillError(
            f"{environment}'s state has no vpc_cidr output.",
            hint=f"Build it first, or apply it once with this code: `labkit stack apply {environment}`.",
        )
    theirs = Stack(other, target, reporter=None)
    serial_before = theirs.state().get("serial")
    wanted = overlapping_range(cidr)
    try:
        theirs.plan({**ours.deployment(), "vpc_cidr": wanted})
    except TerraformError as exc:
        refusal = str(exc)
    else:
        raise DrillError(
            f"A plan of {other} with VPC range {wanted} went through, although {environment} uses {cidr}.",
            hint="The vpc_cidr output's precondition in terraform/shared/bluegreen_root/outputs.tf "
            "should refuse it; check that labkit passed other_vpc_cidrs.",
        )
    names_both = all(part in refusal for part in (environment, other, cidr, wanted))
    if not names_both:
        raise DrillError(
            f"The plan of {other} was refused, but not for the overlap: {refusal}",
            hint="Read Terraform's message above; the drill expects one that names both ranges.",
        )
    if (serial_after := theirs.state().get("serial")) != serial_before:
        raise DrillError(
            f"{other}'s state changed (serial {serial_before} -> {serial_after}) although its plan "
            "was refused.",
            hint=f"Inspect it: `labkit stack plan {other}`.",
        )
    return {
        "environment": environment,
        "cidr": cidr,
        "other": other,
        "tried": wanted,
        "refusal": next(line for line in refusal.splitlines() if "overlaps" in line).strip(),
        "other_state_serial": serial_before,
    }


DRILL = Drill(
    name="cidr-conflict",
    summary="another environment planned with a VPC range that overlaps this one's: refused at plan",
    inject=inject,
    runbook=None,
)
