"""Developer environments: derived names (AWS's limits, no collisions), VPC ranges, claims (moto's
in-process mock) and the generated root (no Terraform)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.errors import ConfigError, StackError
from labkit.infra.envnames import (
    CIDR_POOL,
    DEV_PREFIX,
    DerivedNames,
    cidr_candidates,
    cidr_claim_key,
    claim_environment,
    claims,
    dev_environment,
    dev_root,
    is_dev_environment,
    max_environment_length,
    overlaps,
    release_claims,
    write_root,
)
from labkit.infra.stack import PROJECT, Stack, is_environment
from labkit.settings import terraform_dir
from labkit.target import Target

NAMES = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=60)
#: What a developer types: branches and handles (a leading "dev-" names an existing environment).
TYPED = NAMES.filter(lambda n: any(c.isalnum() for c in n) and not n.strip().startswith(DEV_PREFIX))


def test_a_short_lowercase_name_is_kept_and_anything_else_gets_a_hash() -> None:
    assert dev_environment("alice", PROJECT) == "dev-alice"
    assert dev_environment("dev-alice", PROJECT) == "dev-alice"  # the environment's own name
    branch = dev_environment("feature/Login", PROJECT)
    assert re.fullmatch(r"dev-feature-l-[0-9a-f]{6}", branch)  # what fits of 20 characters
    assert branch != dev_environment("feature-login", PROJECT) == "dev-feature-login"
    long = dev_environment("feature-a-very-long-branch-name", PROJECT)
    assert len(long) == max_environment_length(PROJECT) == 20
    assert long.startswith("dev-feature-")
    assert long != dev_environment("feature-a-very-long-branch-nam", PROJECT)
    # A typed name that ends like a hash is hashed too, so it can never equal a hashed one.
    assert dev_environment("x-1a2b3c", PROJECT) != "dev-x-1a2b3c"
    assert re.fullmatch(r"dev-[0-9a-f]{6}", dev_environment("feature", "p" * 15))  # no room for more
    with pytest.raises(ConfigError, match="no letters or digits"):
        dev_environment("//", PROJECT)


@given(TYPED)
def test_every_derived_name_fits_aws_and_names_itself(name: str) -> None:
    env = dev_environment(name, PROJECT)
    assert is_dev_environment(env) and is_environment(env)
    assert len(env) <= max_environment_length(PROJECT)
    assert dev_environment(env, PROJECT) == env  # every command takes NAME or dev-NAME
    assert DerivedNames(PROJECT, env).too_long() == []


@given(TYPED, TYPED)
def test_different_names_never_share_an_environment(a: str, b: str) -> None:
    if a.strip() != b.strip():
        assert dev_environment(a, PROJECT) != dev_environment(b, PROJECT)


@given(st.lists(TYPED, min_size=2, max_size=8, unique_by=str.strip))
def test_the_resources_of_different_environments_never_share_a_name(names: list[str]) -> None:
    derived = [DerivedNames(PROJECT, dev_environment(n, PROJECT)).names() for n in names]
    for kind in derived[0]:
        values = [d[kind][0] for d in derived]
        assert len(set(values)) == len(values), kind


def test_the_longest_project_still_fits() -> None:
    project = "p" * 15  # the roots' `project` variable allows 2-15 characters
    env = dev_environment("a-branch-with-a-long-name", project)
    assert DerivedNames(project, env).too_long() == [] and len(f"{project}-{env}-green") <= 32


def test_vpc_ranges_come_from_a_pool_clear_of_staging_and_production() -> None:
    assert not any(overlaps(cidr, other) for cidr in CIDR_POOL for other in ("10.20.0.0/16", "10.30.0.0/16"))
    taken = ["10.100.0.0/14", "10.150.0.0/16"]
    free = cidr_candidates("dev-alice", taken)
    assert len(free) == len(CIDR_POOL) - 5 and not any(overlaps(c, t) for c in free for t in taken)
    assert cidr_candidates("dev-alice", []) != cidr_candidates("dev-bob", [])  # they start apart


@pytest.fixture()
def target(moto_target: Target) -> Target:
    """moto, with global's state bucket (versioned, as global creates it)."""
    moto_target.client("s3").create_bucket(Bucket=BUCKET)
    versioning = {"Status": "Enabled"}
    moto_target.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration=versioning)
    return moto_target


#: global's state bucket in moto's account (labkit.infra.stack.StackNames).
BUCKET = "bglab-tfstate-123456789012-us-east-1"


def test_claims_give_each_environment_its_own_range_and_refuse_another_owner(target: Target) -> None:
    used = {"staging": "10.20.0.0/16"}
    alice = claim_environment(target, BUCKET, "dev-alice", "alice", "alice@a", used)
    bob = claim_environment(target, BUCKET, "dev-bob", "bob", "bob@b", {**used, "dev-alice": alice.vpc_cidr})
    assert not overlaps(alice.vpc_cidr, bob.vpc_cidr)
    again = claim_environment(target, BUCKET, "dev-alice", "alice", "alice@a", used)
    assert again == alice
    with pytest.raises(StackError, match="belongs to alice@a") as refused:
        claim_environment(target, BUCKET, "dev-alice", "dev-alice", "bob@b", used)
    assert "labkit env create" in refused.value.hint
    assert [c.environment for c in claims(target, BUCKET)] == ["dev-alice", "dev-bob"]
    release_claims(target, BUCKET, alice)
    assert [c.environment for c in claims(target, BUCKET)] == ["dev-bob"]
    left = target.client("s3").list_object_versions(Bucket=BUCKET, Prefix="labkit/dev-environments/")
    assert {v["Key"] for v in left.get("Versions", [])} == {
        "labkit/dev-environments/environments/dev-bob.json",
        cidr_claim_key(bob.vpc_cidr),
    }


def test_a_range_claimed_a_moment_ago_is_skipped(target: Target) -> None:
    first = cidr_candidates("dev-carol", [])[0]
    # Another create took carol's first choice but has not written its environment claim yet.
    target.client("s3").put_object(Bucket=BUCKET, Key=cidr_claim_key(first), Body=b"dev-racer")
    carol = claim_environment(target, BUCKET, "dev-carol", "carol", "carol@c", {})
    assert carol.vpc_cidr == cidr_candidates("dev-carol", [])[1]


def test_an_asked_for_range_that_overlaps_another_is_refused(target: Target) -> None:
    with pytest.raises(StackError, match=r"10\.20\.0\.0/16 overlaps staging's 10\.20\.0\.0/16"):
        claim_environment(target, BUCKET, "dev-x", "x", "me", {"staging": "10.20.0.0/16"}, "10.20.0.0/16")
    assert claims(target, BUCKET) == []


def test_the_root_links_the_shared_composition_and_sets_only_its_own(
    target: Target, labkit_home: Path
) -> None:
    claim = claim_environment(target, BUCKET, "dev-alice", "alice", "alice@a", {})
    root = write_root(claim)
    assert root == dev_root("dev-alice") and root.is_relative_to(labkit_home)
    staging = terraform_dir() / "environments" / "staging"
    for name in ("composition.tf", "outputs.tf", "providers.tf", "variables.tf", "versions.tf"):
        assert (root / name).read_text() == (staging / name).read_text()
    # The composition's source: the working tree's, through the link staging has too.
    assert (root / "composition/bluegreen_environment/main.tf").is_file()
    assert (root / "composition").resolve() == (staging / "composition").resolve()
    main = (root / "main.tf").read_text()
    assert 'environment = "dev-alice"' in main and f'vpc_cidr                   = "{claim.vpc_cidr}"' in main
    assert Stack("dev-alice", target).declared_variables() == Stack("staging", target).declared_variables()
    # Gone (another machine, a cleaned home): a Stack writes it again from the claim.
    (root / "main.tf").unlink()
    assert Stack("dev-alice", target, reporter=None).root == root and (root / "main.tf").read_text() == main
    with pytest.raises(StackError, match="no developer environment dev-nobody"):
        Stack("dev-nobody", target)
