"""Drill ``out-of-sync``: a new composition version applied to staging and forgotten for production.

A developer changes the composition module (here it gains a resource: an SSM parameter that records
the composition's version where instances could read it), bumps its ``VERSION`` to the next minor
version and applies staging, which runs the working tree. Production, pinned to the last release,
never gets it. ``labkit stack compare staging production`` must then name the composition version
and the new resource as unintended differences; ``promote-composition`` releases what staging ran,
moves production's pin and plans production (``plan_only``: the drills do not build production,
whose NAT gateway and private subnets cost minutes here; its plan shows the promoted composition's
resources, and the comparison after it, made from that plan, finds nothing unintended).

The drill writes code, so it runs only on a copy of ``terraform/`` (``LABKIT_TERRAFORM_DIR``),
never on the checkout; applying staging from the checkout afterwards puts staging back.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import DrillError
from labkit.infra import composition
from labkit.infra.compare import compare
from labkit.infra.stack import Stack
from labkit.ops.drills import Drill
from labkit.ops.probes import Check
from labkit.settings import PROJECT_ROOT, TERRAFORM_DIR_ENV, terraform_dir
from labkit.target import Target

#: The file the new version adds to the composition module, and the resource in it.
ADDED_FILE = "composition_marker.tf"
ADDED_RESOURCE = "module.environment.aws_ssm_parameter.composition_version"
_ADDED_CODE = """# Added by the out-of-sync drill: the composition's version, where instances can read it.
resource "aws_ssm_parameter" "composition_version" {
  name  = "/${var.name}/composition-version"
  type  = "String"
  value = local.release.version
}
"""


def next_minor(version: str) -> str:
    """``1.0.0`` -> ``1.1.0``."""
    major, minor, _ = (int(part) for part in version.split("."))
    return f"{major}.{minor + 1}.0"


def inject(target: Target, environment: str) -> dict[str, Any]:
    """Change the composition in the working tree, bump its version, apply ``environment`` (staging)."""
    if environment != "staging":
        raise DrillError(
            f"out-of-sync changes staging and leaves production behind; {environment} was given.",
            hint="Run it with --env staging.",
        )
    if terraform_dir() == (PROJECT_ROOT / "terraform").resolve():
        raise DrillError(
            "out-of-sync writes a new composition version into terraform/, which must not be the checkout.",
            hint=f"Copy terraform/ keeping its links (cp -a terraform /tmp/tf) and set "
            f"{TERRAFORM_DIR_ENV}=/tmp/tf.",
        )
    stack = Stack(environment, target, reporter=None)
    if not stack.deployment():
        raise DrillError(
            f"{environment} is not built on {target.name}.", hint="Build it: `labkit stack apply staging`."
        )
    modules = terraform_dir() / "modules"
    previous = composition.version_of(modules)
    version = next_minor(previous)
    (modules / "bluegreen_environment" / ADDED_FILE).write_text(_ADDED_CODE)
    (modules / "bluegreen_environment" / "VERSION").write_text(version + "\n")
    result = stack.apply()
    return {
        "previous": previous,
        "version": version,
        "added": ADDED_RESOURCE,
        "applied": f"{result.added} added, {result.changed} changed",
    }


def in_sync(target: Target, environment: str) -> Check:
    """``labkit stack compare staging production`` finds no unintended difference."""
    found = compare(Stack("staging", target, reporter=None), Stack("production", target, reporter=None))
    if found.has_unintended:
        return False, "; ".join(d.line().strip() for d in found.unintended)
    return True, f"only intended differences ({len(found.differences)})"


DRILL = Drill(
    name="out-of-sync",
    summary="a new composition version applied to staging and forgotten for production",
    inject=inject,
    runbook="promote-composition",
    checks={"in-sync": in_sync},
    runbook_parameters=lambda facts: {"plan_only": True},
    runbook_environment="production",
)
