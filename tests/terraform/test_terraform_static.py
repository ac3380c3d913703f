"""Every Terraform root is formatted, validates, and passes its `terraform test` files.

Offline: `validate` needs no backend (`init -backend=false`) and the test files mock the AWS
provider. Terraform runs in a copy of `terraform/`, so lock files and `.terraform` dirs never land
in the source tree and a concurrent run elsewhere is never disturbed.

Loading the AWS provider's schema costs seconds per Terraform command, so the module examples are
validated together, through one generated root that calls each of them; the environments are
validated one by one; every module and environment runs its own tests. The folders run two at a
time, as each Terraform command keeps about one core busy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labkit.infra.terraform import cli_config_file, drop_mirror_hashes_in, go_runtime_env, terraform_binary
from labkit.settings import terraform_dir

pytestmark = pytest.mark.integration

SOURCE = terraform_dir()
MODULES = sorted(p.relative_to(SOURCE) for p in (SOURCE / "modules").iterdir() if (p / "main.tf").exists())
ENVIRONMENTS = sorted(p.relative_to(SOURCE) for p in (SOURCE / "environments").iterdir() if p.is_dir())
EXAMPLES = sorted(p.relative_to(SOURCE) for p in SOURCE.glob("modules/*/examples/*") if p.is_dir())
#: Every module and environment that has test files.
TESTED = [root for root in MODULES + ENVIRONMENTS if list((SOURCE / root / "tests").glob("*.tftest.hcl"))]
#: The root that calls every example (examples configure their own provider, like any root).
ALL_EXAMPLES = Path("all_examples")

Results = dict[tuple[str, Path], subprocess.CompletedProcess[str]]


def terraform(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [terraform_binary(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Terraform's output, or a failure that shows it."""
    assert proc.returncode == 0, f"terraform {' '.join(proc.args[1:])} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_HOME", str(tmp_path_factory.mktemp("labkit-home")))
        env = go_runtime_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        env.update(
            TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", AWS_EC2_METADATA_DISABLED="true"
        )
        config = cli_config_file()  # the provider mirror, when LABKIT_TF_PLUGIN_MIRROR names one
        if config is not None:
            env["TF_CLI_CONFIG_FILE"] = str(config)
        else:
            env.pop("TF_CLI_CONFIG_FILE", None)
        yield env


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tf_env: dict[str, str]) -> Results:
    """``validate`` in every environment and in the root that calls every example, and ``test``
    in every module and environment, each after ``init -backend=false``, in a copy of the tree."""
    workspace = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(
        SOURCE, workspace, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*_override.tf")
    )
    (workspace / ALL_EXAMPLES).mkdir()
    (workspace / ALL_EXAMPLES / "main.tf").write_text(
        "".join(
            f'module "{example.parts[1]}_{example.parts[3]}" {{\n  source = "../{example.as_posix()}"\n}}\n\n'
            for example in EXAMPLES
        )
    )
    jobs = [("validate", root) for root in [*ENVIRONMENTS, ALL_EXAMPLES]]
    jobs += [("test", root) for root in TESTED]

    def job(kind: str, root: Path) -> subprocess.CompletedProcess[str]:
        folder = workspace / root
        # An environment is both validated and tested: separate data dirs keep the two runs apart.
        env = {**tf_env, "TF_DATA_DIR": str(folder / f".terraform-{kind}")}
        init = terraform(["init", "-backend=false", "-input=false", "-no-color"], folder, env)
        if init.returncode != 0:
            return init
        drop_mirror_hashes_in(folder)  # as labkit's own init does (saves a hash per run)
        args = ["validate", "-json", "-no-color"] if kind == "validate" else ["test", "-no-color"]
        return terraform(args, folder, env)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(kind, root): pool.submit(job, kind, root) for kind, root in jobs}
        return {key: future.result() for key, future in futures.items()}


def test_every_module_and_environment_is_laid_out_and_tested() -> None:
    assert {str(m) for m in MODULES} >= {
        "modules/network",
        "modules/alb",
        "modules/fleet",
        "modules/state_backend",
        "modules/github_oidc",
        "modules/monitoring",
    }
    assert {str(e) for e in ENVIRONMENTS} == {
        "environments/global",
        "environments/staging",
        "environments/production",
    }
    for module in MODULES:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
            assert (SOURCE / module / name).is_file(), f"{module} lacks {name}"
        assert list((SOURCE / module / "examples").glob("*/main.tf")), f"{module} has no example"
    assert set(TESTED) == set(MODULES + ENVIRONMENTS), "every module and environment has tests/*.tftest.hcl"
    for root in TESTED:
        for path in (SOURCE / root / "tests").glob("*.tftest.hcl"):
            assert 'mock_provider "aws"' in path.read_text(), f"{path} must mock the AWS provider"


def test_staging_and_production_share_one_root_and_set_only_their_own() -> None:
    """Both roots link the same files from terraform/shared/bluegreen_root (so they cannot drift
    apart again) and keep only main.tf, their own settings, as a file of their own."""
    shared = SOURCE / "shared" / "bluegreen_root"
    names = sorted(p.name for p in shared.glob("*.tf"))
    assert "composition.tf" in names and "variables.tf" in names
    for env in ("staging", "production"):
        root = SOURCE / "environments" / env
        for name in names:
            assert (root / name).is_symlink(), f"{root / name} must link {shared / name}, not copy it"
            assert (root / name).resolve() == (shared / name).resolve()
        own = sorted(p.name for p in root.glob("*.tf") if not p.is_symlink())
        assert own == ["main.tf"], f"{env} has files of its own besides main.tf: {own}"


def test_staging_runs_the_working_tree_and_production_a_release() -> None:
    """Each root's composition pin is a link: staging's to terraform/modules, production's to a
    release that declares its own folder's version (labkit.infra.composition)."""
    staging = SOURCE / "environments" / "staging" / "composition"
    production = SOURCE / "environments" / "production" / "composition"
    assert staging.is_symlink() and production.is_symlink()
    assert staging.resolve() == (SOURCE / "modules").resolve()
    release = production.resolve()
    assert release.parent == (SOURCE / "releases" / "bluegreen_environment").resolve(), release
    for folder in release.parent.iterdir():
        declared = (folder / "bluegreen_environment" / "VERSION").read_text().strip()
        assert declared == folder.name.removeprefix("v"), folder


def test_terraform_fmt_is_clean(tf_env: dict[str, str]) -> None:
    proc = terraform(["fmt", "-check", "-recursive", "-diff", str(SOURCE)], SOURCE, tf_env)
    assert proc.returncode == 0, f"Run `terraform fmt -recursive terraform/`:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("root", [*ENVIRONMENTS, ALL_EXAMPLES], ids=str)
def test_root_validates(root: Path, results: Results) -> None:
    output = ok(results["validate", root])
    assert json.loads(output)["valid"] is True, output
    if root == ALL_EXAMPLES:
        assert len(EXAMPLES) == len(MODULES), "every module has an example, and all of them are validated"


@pytest.mark.parametrize("root", TESTED, ids=str)
def test_terraform_test_passes(root: Path, results: Results) -> None:
    output = ok(results["test", root])
    summary = output.strip().splitlines()[-1]
    assert summary.startswith("Success!") and " 0 failed" in summary, output
    assert "skipped" not in summary, output
