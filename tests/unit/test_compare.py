"""`labkit stack compare` and the composition pins, on the project's own Terraform files (read with
python-hcl2) and copies of them: settings extraction, what follows from a setting, version and
provider reading, the intended/unintended split, releases and pins, and the promotion's plan."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import DrillError, RunbookError, StackError
from labkit.infra import compare, composition
from labkit.infra.compare import Side
from labkit.infra.terraform import Terraform
from labkit.ops import promote
from labkit.settings import TERRAFORM_DIR_ENV, terraform_dir
from labkit.target import sandbox

NAT = "module.environment.module.network.aws_nat_gateway.this[0]"
DASHBOARD = "module.environment.module.monitoring.aws_cloudwatch_dashboard.this[0]"
ALARM_KEY = "module.environment.module.monitoring.aws_kms_key.alarms[0]"
LOCK = """# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "%s"
  constraints = ">= 5.40.0, < 6.0.0"
  hashes = [
    "h1:edXOJWE4ORX8Fm+dpVpICzMZJat4AX0VRCAy/xkcOc0=",
  ]
}
"""


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of terraform/ with its links kept, which labkit then uses."""
    copy = tmp_path / "terraform"
    shutil.copytree(terraform_dir(), copy, symlinks=True, ignore=shutil.ignore_patterns(".terraform*"))
    monkeypatch.setenv(TERRAFORM_DIR_ENV, str(copy))
    return copy


def test_settings_come_from_each_roots_main_tf() -> None:
    environments = terraform_dir() / "environments"
    assert compare.declared_settings(environments / "staging") == {
        "vpc_cidr": "10.20.0.0/16",
        "enable_deletion_protection": False,
        "instance_type": "t4g.micro",
        "spot_instances": True,
        "enable_dashboard": False,
        "alarm_topic_on_project_key": True,
    }
    production = compare.declared_settings(environments / "production")
    assert production["enable_private_subnets"] is True
    assert production["health_check"] == {"interval": 10, "timeout": 5, "healthy_threshold": 3}
    assert production["deregistration_delay"] == 30


def test_module_defaults_and_what_follows_from_a_setting_are_read_from_the_module() -> None:
    folder = terraform_dir() / "modules"
    defaults = compare.module_defaults(folder)
    assert defaults["deregistration_delay"] == 5 and defaults["enable_deletion_protection"] is True
    follows = compare.setting_resources(folder)
    assert compare.resource_kind(NAT).removeprefix("module.environment.") in follows["enable_private_subnets"]
    assert "module.network.aws_subnet.private" in follows["enable_private_subnets"]
    assert follows["enable_budget"] == {"module.monitoring.aws_budgets_budget.monthly"}
    assert follows["enable_dashboard"] == {"module.monitoring.aws_cloudwatch_dashboard.this"}
    assert "vpc_cidr" not in follows  # a range changes attributes, never which resources exist


def test_a_root_setting_passed_under_another_name_brings_what_the_variable_brings() -> None:
    staging = terraform_dir() / "environments" / "staging"
    assert compare.settings_passed(staging)["alarm_kms_key_arn"] == {"alarm_topic_on_project_key"}
    follows = compare.root_setting_resources(staging, terraform_dir() / "modules")
    assert follows["alarm_topic_on_project_key"] == {
        "module.monitoring.aws_kms_key.alarms",
        "module.monitoring.aws_kms_alias.alarms",
    }


def test_provider_versions_come_from_the_lock_file(tmp_path: Path) -> None:
    assert compare.lock_versions(tmp_path) == {}
    (tmp_path / ".terraform.lock.hcl").write_text(LOCK % "5.100.0")
    assert compare.lock_versions(tmp_path) == {"registry.terraform.io/hashicorp/aws": "5.100.0"}


def side(env: str, tree: Path, **overrides: Any) -> Side:
    """One environment as compare reads it, from the tree's files and the given state facts."""
    root = tree / "environments" / env
    folder = (root / composition.PIN).resolve()
    settings = compare.declared_settings(root)
    values: dict[str, Any] = {
        "env": env,
        "settings": settings,
        "effective": {**compare.module_defaults(folder), **settings},
        "outputs": {},
        "pin": composition.pin(env),
        "resolved": folder,
        "providers": {"registry.terraform.io/hashicorp/aws": "5.100.0"},
        "resources": {"module.environment.module.alb.aws_lb.this"},
        "follows": compare.root_setting_resources(root, folder),
    }
    values.update(overrides)
    return Side(**values)


def classify(a: Side, b: Side) -> dict[tuple[str, str], bool]:
    found = [
        *compare.setting_differences(a, b),
        *compare.applied_differences(a, b),
        *compare.deployment_differences(a, b),
        *compare.module_differences(a, b),
        *compare.provider_differences(a, b),
        *compare.resource_differences(a, b),
    ]
    return {(d.kind, d.name): d.intended for d in found}


def test_declared_settings_and_what_they_bring_are_intended(tree: Path) -> None:
    staging = side("staging", tree)
    production = side("production", tree, resources=staging.resources | {NAT, DASHBOARD, ALARM_KEY})
    assert classify(staging, production) == {
        ("setting", "vpc_cidr"): True,
        ("setting", "enable_deletion_protection"): True,
        ("setting", "enable_private_subnets"): True,
        ("setting", "health_check"): True,
        ("setting", "deregistration_delay"): True,
        ("setting", "monthly_budget_usd"): True,
        ("setting", "instance_type"): True,
        ("setting", "spot_instances"): True,
        ("setting", "enable_dashboard"): True,
        ("setting", "alarm_topic_on_project_key"): True,
        ("resource", NAT): True,
        ("resource", DASHBOARD): True,
        ("resource", ALARM_KEY): True,
    }


def test_versions_deployments_values_and_resources_no_setting_explains_are_unintended(tree: Path) -> None:
    deployment = {"blue_version": "1.0.0", "blue_capacity": 2, "green_weight": 0}
    applied = {"vpc_cidr": "10.20.0.0/16", "private_subnets": False, "deregistration_delay": 12}
    staging = side(
        "staging",
        tree,
        outputs={"deployment": deployment, "settings": applied},
        resources={"module.environment.aws_ssm_parameter.composition_version"},
        providers={"registry.terraform.io/hashicorp/aws": "5.99.0"},
    )
    edited = composition.Pin("staging", "../../modules", "1.1.0", "f" * 64, True, False)
    staging = replace(staging, pin=edited)
    production = side("production", tree, outputs={"deployment": {**deployment, "blue_version": "0.9.0"}})
    found = classify(staging, production)
    unintended = {key for key, intended in found.items() if not intended}
    assert unintended == {
        ("applied", "deregistration_delay"),  # applied with --var: staging's code says 5
        ("deployment", "blue_version"),
        ("module", "composition (code)"),
        ("module", "composition (stale init)"),  # staging's init resolved 1.0.0, its pin says 1.1.0
        ("provider", "registry.terraform.io/hashicorp/aws"),
        ("resource", "module.environment.aws_ssm_parameter.composition_version"),
        ("resource", "module.environment.module.alb.aws_lb.this"),
    }


def test_a_release_is_a_copy_whose_digest_the_pin_reports(tree: Path) -> None:
    modules = tree / "modules"
    current = composition.version_of(modules)
    assert composition.pin("staging").working_tree and composition.pin("staging").released
    assert composition.pin("production").link == f"../../releases/bluegreen_environment/v{current}"
    with pytest.raises(StackError, match="exists already"):
        composition.cut_release()
    (modules / "monitoring" / "main.tf").write_text((modules / "monitoring" / "main.tf").read_text() + "\n")
    edited = composition.pin("staging")
    assert not edited.released and "which no release holds as is" in edited.describe()
    with pytest.raises(StackError, match=f"VERSION says '{re.escape(current)}'"):
        composition.cut_release("9.0.0")
    (modules / "bluegreen_environment" / "VERSION").write_text("9.0.0\n")
    release = composition.cut_release()
    assert composition.digest(release) == composition.digest(modules) == composition.pin("staging").digest
    assert sorted(p.name for p in release.iterdir()) == sorted(composition.MODULES)
    assert not (release / "fleet" / "tests").exists() and (release / "fleet" / "templates").is_dir()
    assert not (release / "database" / "examples").exists()
    moved = composition.move_pin("production", "9.0.0")
    assert (moved.version, moved.digest, moved.working_tree) == ("9.0.0", composition.digest(release), False)
    assert composition.released_versions()[-2:] == [current, "9.0.0"]
    assert composition.released_versions()[0] == "1.0.0"
    with pytest.raises(StackError, match=r"no release v9\.9\.9"):
        composition.move_pin("production", "9.9.9")


def test_init_forgets_a_module_folder_whose_link_was_moved(tree: Path, tmp_path: Path) -> None:
    """Terraform keeps the folder a local module resolved to, re-init or not: labkit drops the
    manifest when a link on the way now leads elsewhere."""
    root, data = tree / "environments" / "production", tmp_path / "tfdata"
    pinned = composition.pin("production").version
    (data / "modules").mkdir(parents=True)
    manifest = [
        {"Key": "", "Source": "", "Dir": "."},
        {
            "Key": "environment",
            "Source": "./composition/bluegreen_environment",
            "Dir": f"../../releases/bluegreen_environment/v{pinned}/bluegreen_environment",
        },
        {
            "Key": "environment.network",
            "Source": "../network",
            "Dir": f"../../releases/bluegreen_environment/v{pinned}/network",
        },
    ]
    (data / "modules" / "modules.json").write_text(json.dumps({"Modules": manifest}))
    terraform = Terraform(root, target=sandbox("http://127.0.0.1:9"), data_dir=data)
    assert not terraform._stale_module_manifest()
    (tree / "modules" / "bluegreen_environment" / "VERSION").write_text("9.0.0\n")
    composition.cut_release()
    composition.move_pin("production", "9.0.0")
    assert terraform._stale_module_manifest()


def promotion(*, released: bool, built: bool) -> promote.Promotion:
    link = "../../releases/bluegreen_environment/v1.0.0"
    pin = composition.Pin("production", link, "1.0.0", "a" * 64, False, True)
    return promote.Promotion("1.1.0", "b" * 64, pin, released, built)


def test_the_promotion_releases_if_needed_moves_the_pin_plans_and_applies(tree: Path) -> None:
    stack: Any = object()  # the actions only close over it
    planned = promote.actions(stack, promotion(released=False, built=True), plan_only=False)
    steps = [a.description for a in planned]
    assert steps == [
        "release composition 1.1.0: copy terraform/modules to "
        "terraform/releases/bluegreen_environment/v1.1.0",
        "move production's pin from ../../releases/bluegreen_environment/v1.0.0 to release v1.1.0",
        "plan production at composition 1.1.0",
        "apply production",
    ]
    only_plan = promote.actions(stack, promotion(released=True, built=False), plan_only=True)
    assert [a.description.split(" ")[0] for a in only_plan] == ["move", "plan"]
    with pytest.raises(RunbookError, match="production is not built"):
        promote.actions(stack, promotion(released=True, built=False), plan_only=False)
    same = promote.Promotion("1.0.0", "a" * 64, promotion(released=True, built=True).pin, True, True)
    assert not same.needed and promote.actions(stack, same, plan_only=False) == []


def test_the_drill_writes_code_only_into_a_copy_and_to_staging(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.ops.drills import all_drills, out_of_sync

    target = sandbox("http://127.0.0.1:9")
    monkeypatch.delenv(TERRAFORM_DIR_ENV, raising=False)
    with pytest.raises(DrillError, match="must not be the checkout"):
        out_of_sync.inject(target, "staging")
    with pytest.raises(DrillError, match="changes staging and leaves production behind"):
        out_of_sync.inject(target, "production")
    assert out_of_sync.next_minor("1.0.7") == "1.1.0"
    registered = all_drills()["out-of-sync"]
    assert (registered.runbook, registered.runbook_environment) == ("promote-composition", "production")
