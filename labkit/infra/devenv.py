"""Developer and feature-branch environments: ``labkit env create NAME``, ``destroy``, ``list``.

Each is the composition staging uses, with its own derived name, VPC range, state key and root
(:mod:`labkit.infra.envnames`), sharing global's state bucket, artifact bucket and ledger table.
Once created it is an environment like the others: ``labkit stack plan dev-alice``, ``labkit deploy
start dev-alice 1.1.0`` and the runbooks take its name.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.errors import ConfigError, StackError
from labkit.infra.envnames import (
    Claim,
    DerivedNames,
    claim_environment,
    claims,
    default_owner,
    delete_every_version,
    dev_environment,
    dev_root,
    read_claim,
    release_claims,
    write_root,
)
from labkit.infra.stack import Stack, StackNames, state_key, vpc_cidrs
from labkit.infra.terraform import ApplyResult
from labkit.infra.tfjson import raw_state_resources
from labkit.target import Target

Say = Callable[[str], None]


@dataclass(frozen=True)
class Created:
    claim: Claim
    names: DerivedNames
    result: ApplyResult
    url: str | None

    def lines(self) -> list[str]:
        """What was derived, for the person who asked for it."""
        rows = [
            f"environment {self.claim.environment} (from {self.claim.name!r}, owner {self.claim.owner})",
            f"  VPC range          {self.claim.vpc_cidr}",
            f"  root               {dev_root(self.claim.environment)}",
        ]
        rows += [f"  {kind:<18} {name}" for kind, (name, _) in self.names.names().items()]
        rows.append(f"  applied: {self.result.added} added, {self.result.changed} changed, "
                    f"{self.result.removed} destroyed in {self.result.seconds:.0f} s")  # fmt: skip
        if self.url:
            rows.append(f"  serves at          {self.url}")
        return rows


def _require_global(target: Target, names: StackNames) -> None:
    if not Stack("global", target, reporter=None)._bucket_exists(names.state_bucket):
        raise StackError(
            f"global is not applied on {target.name}: a developer environment keeps its state in global's "
            "bucket and its releases in global's artifact bucket.",
            hint="Apply it first: `labkit stack apply global`.",
        )


def newest_release(target: Target, bucket: str) -> str:
    from labkit.release.build import list_releases  # only create needs it

    releases = list_releases(target, bucket)
    if not releases:
        raise StackError(
            f"There is no release in {bucket} for the new environment to run.",
            hint="Build and publish one first: `labkit release build 1.0.0`.",
        )
    return releases[-1]


def create(
    target: Target,
    name: str,
    *,
    version: str | None = None,
    capacity: int = 1,
    vpc_cidr: str | None = None,
    owner: str | None = None,
    say: Say | None = print,
) -> Created:
    """Create (or bring up to date) the developer environment NAME derives: claim its name and a free
    VPC range, write its root, apply it with blue on ``version`` at ``capacity`` (first apply only;
    later ones keep its deployment)."""
    if capacity < 1:
        raise ConfigError(
            f"capacity is {capacity}: blue takes all of a new environment's traffic and needs an instance.",
            hint="Pass --capacity 1 or more.",
        )
    target.require_spend(f"create developer environment {name}")
    names = StackNames.for_target(target)
    _require_global(target, names)
    env = dev_environment(name, names.project)
    claim = claim_environment(
        target, names.state_bucket, env, name, owner or default_owner(), vpc_cidrs(target), vpc_cidr
    )
    write_root(claim)
    stack = Stack(env, target, reporter=say)
    variables: dict[str, Any] = {}
    if not stack.deployment():
        release = version or newest_release(target, names.artifact_bucket)
        variables = {"blue_version": release, "green_version": release, "blue_capacity": capacity,
                     "green_capacity": 0, "green_weight": 0}  # fmt: skip
    result = stack.apply(variables)
    dns = result.outputs.get("alb_dns_name") or stack.outputs().get("alb_dns_name")
    url = target.alb_url(str(dns)) if dns else None
    return Created(claim, DerivedNames(names.project, env), result, url)


def destroy(
    target: Target,
    name: str,
    *,
    confirm: str | None = None,
    owner: str | None = None,
    say: Say | None = print,
) -> str:
    """Destroy the developer environment NAME derives: its resources, every version of its state
    object, its claims, its root and Terraform data. Another owner's needs ``confirm`` equal to its
    name (and on AWS every one does, as for staging). Returns the environment's name."""
    names = StackNames.for_target(target)
    env = dev_environment(name, names.project)
    claim = read_claim(target, names.state_bucket, env)
    mine = owner or default_owner()
    if claim is not None and claim.owner != mine and confirm != env:
        raise StackError(
            f"{env} belongs to {claim.owner}, not {mine}.",
            hint=f"If it must go, say so: `labkit env destroy {env} --confirm {env}`.",
        )
    key = state_key(env)
    if claim is not None or _has_state(target, names.state_bucket, key):
        if claim is None:
            raise StackError(
                f"{env} has a state object but no claim: it was not made by `labkit env create`.",
                hint=f"Read it first: `labkit stack output {env}`; remove its resources with Terraform.",
            )
        stack = Stack(env, target, reporter=say)
        stack.destroy(confirm=confirm)
        left = raw_state_resources(stack.state())
        if left:
            raise StackError(
                f"{env} still holds {len(left)} resources after its destroy; its state and claim are kept.",
                hint=f"Read `labkit stack output {env}` and the error above, then run the destroy again.",
            )
        delete_every_version(target, names.state_bucket, (key, key + ".tflock"))
        release_claims(target, names.state_bucket, claim)
        shutil.rmtree(stack.work_dir, ignore_errors=True)
    shutil.rmtree(dev_root(env), ignore_errors=True)
    if say is not None:
        say(f"{env}: destroyed; its state object and claims are deleted")
    return env


def _has_state(target: Target, bucket: str, key: str) -> bool:
    listing = target.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return any(v["Key"] == key for v in listing.get("Versions", []))


def listing(target: Target) -> list[dict[str, Any]]:
    """Every developer environment on ``target``: its claim and how many resources its state holds."""
    names = StackNames.for_target(target)
    s3 = target.client("s3")
    rows = []
    for claim in claims(target, names.state_bucket):
        key = state_key(claim.environment)
        if _has_state(target, names.state_bucket, key):
            body = s3.get_object(Bucket=names.state_bucket, Key=key)["Body"].read()
            held = len(raw_state_resources(json.loads(body or b"{}")))
        else:
            held = 0
        rows.append({**claim.to_json(), "resources": held})
    return rows
