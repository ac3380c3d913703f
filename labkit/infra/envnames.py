"""Names and roots of developer (feature-branch) environments, derived so that none ever collide.

``labkit env create NAME`` makes an environment of the shared composition
(``terraform/shared/bluegreen_root``) for one developer or branch. Everything it names comes from
one derived environment name (:func:`dev_environment`): ``dev-`` and NAME, lowercased, when NAME is
already such a name and short enough; otherwise a slug of NAME cut short, then ``-`` and a hash of
NAME. So ``feature/Login`` and ``feature-login`` are different environments, and a name that fits
is kept as typed. The length limit comes from AWS: target groups (``<project>-<env>-green``) and
load balancers take at most 32 characters.

Two developers on one account are kept apart by claims in the state bucket, written with S3's
conditional put (``If-None-Match: *``): one per environment (its NAME, owner and VPC range) and one
per VPC range. Whoever writes a claim first has it; the other is refused (the environment) or moves
to the next free range (the VPC), even when both run at the same moment.

The root is generated, never committed: ``<labkit home>/dev-roots/environments/<env>/``, linking the
shared files as staging does, beside links to the checkout's ``modules/`` and ``shared/`` so that the
composition's ``../../modules/...`` resolves. Only its ``main.tf`` is its own; it is rewritten from
the claim whenever it is missing (another machine, a cleaned home).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import ConfigError, StackError
from labkit.settings import labkit_home, terraform_dir, user_at_host
from labkit.target import Target

DEV_PREFIX = "dev-"
#: AWS's limit on load balancer and target group names.
AWS_LB_NAME_MAX = 32
#: The longest suffix the modules append to ``<project>-<env>`` for a name AWS limits to 32.
_LONGEST_LB_SUFFIX = "-green"
#: Hex digits of the hash a derived name ends with when NAME could not be kept as typed.
HASH_LEN = 6
_HASH_TAIL = re.compile(rf"-[0-9a-f]{{{HASH_LEN}}}$")
_CANONICAL = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
#: The VPC ranges developer environments get: 10.100.0.0/16 to 10.199.0.0/16, clear of staging's
#: 10.20.0.0/16 and production's 10.30.0.0/16.
CIDR_POOL = tuple(f"10.{100 + i}.0.0/16" for i in range(100))
#: Where the claims live in the state bucket.
CLAIMS_PREFIX = "labkit/dev-environments/"
#: The files of the shared composition an environment root links (staging's and production's too).
SHARED_FILES = ("composition.tf", "outputs.tf", "providers.tf", "variables.tf", "versions.tf")


def max_environment_length(project: str) -> int:
    """The longest environment name whose ``<project>-<env>-green`` fits AWS's 32 characters."""
    return AWS_LB_NAME_MAX - len(project) - 1 - len(_LONGEST_LB_SUFFIX)


def is_dev_environment(env: str) -> bool:
    """True for a name :func:`dev_environment` can return (any project's length aside)."""
    return env.startswith(DEV_PREFIX) and bool(_CANONICAL.match(env)) and len(env) > len(DEV_PREFIX)


def dev_environment(name: str, project: str) -> str:
    """The environment NAME gets: ``dev-NAME`` when NAME is lowercase letters and digits joined by
    single hyphens, fits, and does not end like a hash; else ``dev-<slug>-<hash of NAME>``.

    Kept names never end in ``-`` and six hex digits and hashed ones always do, so two NAMEs share an
    environment only if their hashes collide (the environment claim still refuses the second).
    A NAME that is already a developer environment's name (``dev-alice``, ``dev-x-1a2b3c``) names
    that environment, so every command takes either."""
    name = name.strip()
    if is_dev_environment(name) and len(name) <= max_environment_length(project):
        return name
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ConfigError(
            f"{name!r} has no letters or digits to name an environment after.",
            hint="Name it after your branch or yourself: `labkit env create feature-login`.",
        )
    kept = DEV_PREFIX + slug
    fits = len(kept) <= max_environment_length(project)
    if fits and kept == DEV_PREFIX + name and not _HASH_TAIL.search(kept):
        return kept
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_LEN]
    room = max_environment_length(project) - len(DEV_PREFIX) - HASH_LEN - 1
    kept_part = slug[:room].rstrip("-") if room > 0 else ""  # a 15-character project leaves no room
    return f"{DEV_PREFIX}{kept_part}-{digest}" if kept_part else f"{DEV_PREFIX}{digest}"


@dataclass(frozen=True)
class DerivedNames:
    """What an environment's resources are called (the modules' naming, in one place to show and
    test), each with AWS's length limit."""

    project: str
    environment: str

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.environment}"

    def names(self) -> dict[str, tuple[str, int]]:
        """kind -> (name, AWS's limit). ASG names also carry the release (``-1.0.0``)."""
        p = self.prefix
        return {
            "load balancer": (p, 32),
            "target group blue": (f"{p}-blue", 32),
            "target group green": (f"{p}-green", 32),
            "ALB security group": (f"{p}-alb", 255),
            "instance security group green": (f"{p}-green-instances", 255),
            "IAM role green": (f"{p}-green", 64),
            "IAM role flow logs": (f"{p}-flow-logs", 64),
            "launch template green": (f"{p}-green", 128),
            "ASG green (+ release)": (f"{p}-green-", 255),
            "SNS topic": (f"{p}-alarms", 256),
            "KMS alias": (f"alias/{p}-alarms", 256),
            "dashboard": (p, 255),
            "flow log group": (f"/vpc/{p}/flow-logs", 512),
            "state key": (f"{self.environment}/terraform.tfstate", 1024),
        }

    def too_long(self) -> list[str]:
        """The kinds whose name passes AWS's limit (none for a derived environment)."""
        return [kind for kind, (name, limit) in self.names().items() if len(name) > limit]


# -- VPC ranges -----------------------------------------------------------------------------------


def overlaps(a: str, b: str) -> bool:
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


def cidr_candidates(env: str, used: Iterable[str]) -> list[str]:
    """The pool's ranges that overlap none of ``used``, starting at one picked by ``env``'s hash:
    environments created at the same moment then try different ranges first."""
    used = list(used)
    start = int(hashlib.sha256(env.encode()).hexdigest(), 16) % len(CIDR_POOL)
    ordered = CIDR_POOL[start:] + CIDR_POOL[:start]
    return [cidr for cidr in ordered if not any(overlaps(cidr, other) for other in used)]


# -- claims in the state bucket ---------------------------------------------------------------------


def default_owner() -> str:
    """Who creates an environment: ``user@host``."""
    return user_at_host()


@dataclass(frozen=True)
class Claim:
    """A developer environment as its claim records it."""

    environment: str
    name: str
    owner: str
    vpc_cidr: str
    created: str

    def to_json(self) -> dict[str, str]:
        return {
            "environment": self.environment,
            "name": self.name,
            "owner": self.owner,
            "vpc_cidr": self.vpc_cidr,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Claim:
        return cls(**{key: str(data[key]) for key in ("environment", "name", "owner", "vpc_cidr", "created")})


def claim_key(env: str) -> str:
    return f"{CLAIMS_PREFIX}environments/{env}.json"


def cidr_claim_key(cidr: str) -> str:
    return f"{CLAIMS_PREFIX}cidrs/{cidr.replace('/', '_')}"


def _put_new(target: Target, bucket: str, key: str, body: str) -> bool:
    """Write ``key`` unless it exists (S3's conditional put): True when this call wrote it."""
    try:
        target.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode(), IfNoneMatch="*")
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412",
                                                               "ConditionalRequestConflict"):
            return False
        raise
    return True


def read_claim(target: Target, bucket: str, env: str) -> Claim | None:
    try:
        body = target.client("s3").get_object(Bucket=bucket, Key=claim_key(env))["Body"].read()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
            return None
        raise
    return Claim.from_json(json.loads(body))


def claims(target: Target, bucket: str) -> list[Claim]:
    """Every developer environment claimed in ``bucket``, by name."""
    s3 = target.client("s3")
    found = []
    prefix = f"{CLAIMS_PREFIX}environments/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            env = str(entry["Key"])[len(prefix) :].removesuffix(".json")
            if (claim := read_claim(target, bucket, env)) is not None:
                found.append(claim)
    return sorted(found, key=lambda c: c.environment)


def claim_environment(
    target: Target, bucket: str, env: str, name: str, owner: str, used_cidrs: Mapping[str, str],
    vpc_cidr: str | None = None,
) -> Claim:
    """Claim ``env`` for ``owner``, with a VPC range that overlaps none of ``used_cidrs`` (by
    environment), or return the claim ``owner`` holds already. Refuses an environment another
    owner claimed, and a ``vpc_cidr`` that overlaps another environment's range."""
    held = read_claim(target, bucket, env)
    if held is not None:
        return _same_owner(held, owner, name)
    taken = [cidr for other, cidr in used_cidrs.items() if other != env]
    if vpc_cidr is not None:
        clash = {
            other: cidr for other, cidr in used_cidrs.items() if other != env and overlaps(vpc_cidr, cidr)
        }
        if clash:
            raise StackError(
                f"{env}'s VPC range {vpc_cidr} overlaps "
                + " and ".join(f"{other}'s {cidr}" for other, cidr in clash.items()) + ".",
                hint="Leave --vpc-cidr out to get a free range, or choose one that overlaps none.",
            )
        candidates = [vpc_cidr]
    else:
        candidates = cidr_candidates(env, taken)
    for cidr in candidates:
        if not _put_new(target, bucket, cidr_claim_key(cidr), env):
            continue  # another environment claimed it a moment ago
        claim = Claim(env, name, owner, cidr, datetime.now(UTC).isoformat(timespec="seconds"))
        if _put_new(target, bucket, claim_key(env), json.dumps(claim.to_json(), indent=2)):
            return claim
        # Someone claimed the environment itself meanwhile: give the range back, judge their claim.
        target.client("s3").delete_object(Bucket=bucket, Key=cidr_claim_key(cidr))
        raced = read_claim(target, bucket, env)
        if raced is None:
            raise StackError(f"{env}'s claim changed while it was made.", hint="Run the command again.")
        return _same_owner(raced, owner, name)
    raise StackError(
        f"No free VPC range for {env}: every range of the developer pool (10.100-10.199.0.0/16) is "
        "claimed or overlaps another environment's." if vpc_cidr is None else
        f"{vpc_cidr} is claimed by another environment.",
        hint="`labkit env list` shows who holds which; destroy the ones no longer needed.",
    )


def _same_owner(claim: Claim, owner: str, name: str) -> Claim:
    if claim.owner != owner:
        raise StackError(
            f"Environment {claim.environment} belongs to {claim.owner} (created {claim.created} as "
            f"{claim.name!r}); {name!r} derives the same name.",
            hint="Choose another NAME (`labkit env create NAME`), or ask its owner to "
            f"`labkit env destroy {claim.environment}`.",
        )
    return claim


def release_claims(target: Target, bucket: str, claim: Claim) -> None:
    """Delete an environment's claims."""
    delete_every_version(target, bucket, (claim_key(claim.environment), cidr_claim_key(claim.vpc_cidr)))


def delete_every_version(target: Target, bucket: str, keys: Iterable[str]) -> None:
    """Delete every version and delete marker of each of ``keys`` (the state bucket is versioned:
    a plain delete would leave the object behind a marker)."""
    s3 = target.client("s3")
    for key in keys:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        entries = [
            {"Key": e["Key"], "VersionId": e["VersionId"]}
            for e in (*listing.get("DeleteMarkers", []), *listing.get("Versions", []))
            if e["Key"] == key
        ]
        if entries:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": entries, "Quiet": True})


# -- the generated root -----------------------------------------------------------------------------


def dev_roots() -> Path:
    """The tree holding the generated roots, beside links to the checkout's modules and shared files."""
    return labkit_home() / "dev-roots"


def dev_root(env: str) -> Path:
    return dev_roots() / "environments" / env


def main_tf(claim: Claim) -> str:
    """The root's own file: what makes it this environment (the rest is linked, as for staging)."""
    return (
        f"# Written by labkit (`labkit env create {claim.name}`), regenerated from the environment's\n"
        "# claim in the state bucket whenever missing: do not edit.\n"
        f"# Owner: {claim.owner}; created {claim.created}.\n"
        "# The same composition as staging, with staging's settings and its own VPC range.\n\n"
        "locals {\n"
        f'  environment = "{claim.environment}"\n\n'
        "  settings = {\n"
        f'    vpc_cidr                   = "{claim.vpc_cidr}"\n'
        "    enable_deletion_protection = false\n"
        "  }\n"
        "}\n"
    )


def write_root(claim: Claim) -> Path:
    """Write (or refresh) the root of ``claim``'s environment and return it."""
    tree = dev_roots()
    source = terraform_dir()
    (tree / "environments").mkdir(parents=True, exist_ok=True)
    for folder in ("modules", "shared"):
        link = tree / folder
        if link.is_symlink() and link.resolve() != (source / folder).resolve():
            link.unlink(missing_ok=True)  # LABKIT_TERRAFORM_DIR changed: follow it
        _link(link, source / folder)
    root = dev_root(claim.environment)
    root.mkdir(exist_ok=True)
    for name in SHARED_FILES:
        _link(root / name, Path("..", "..", "shared", "bluegreen_root", name))
    # The composition the shared composition.tf calls: the working tree's modules, as staging's
    # link has it (production's names a released copy; see labkit.infra.composition).
    _link(root / "composition", Path("..", "..", "modules"))
    text = main_tf(claim)
    main = root / "main.tf"
    if not main.exists() or main.read_text() != text:
        main.write_text(text)
    return root


def _link(link: Path, to: Path) -> None:
    """``link`` -> ``to`` unless there is one: two creates in one home may write it at once."""
    if not link.is_symlink():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(to)
