"""environment.yml builds what `make setup` builds, and agrees with pyproject.toml.

The rule (also written at the top of environment.yml):
1. Its pip section installs the project in editable mode with the same extras as `make setup`, so
   every dependency that pyproject.toml declares is installed, with pyproject's bounds.
2. Every Python package it takes from conda-forge instead is one of those dependencies, with the
   same bounds: pip then keeps conda's build, and the two files cannot drift apart.
3. Its Python satisfies requires-python; besides Python and pip it adds only Terraform.

And `make setup`'s own pins: requirements/lock.txt pins each of those dependencies within its bounds.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
#: conda-forge names that differ from the PyPI distribution they stand for.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib"}
#: What environment.yml may add that is not a Python dependency of the project.
NOT_PYTHON_PACKAGES = {"python", "pip", "terraform"}
_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")
_EDITABLE = re.compile(r'^-e\s+"?\.\[([A-Za-z0-9_,-]+)\]"?$')


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of environment.yml."""
    data = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [entry for entry in data["dependencies"] if isinstance(entry, str)]
    pips = [entry["pip"] for entry in data["dependencies"] if isinstance(entry, dict)]
    assert len(pips) == 1, "environment.yml has one pip section"
    return conda, pips[0]


def _split(spec: str) -> tuple[str, str]:
    match = _SPEC.match(spec.strip())
    assert match, f"cannot read the conda spec {spec!r}"
    return match.group(1), match.group(2).replace(" ", "")


def _setup_extras() -> set[str]:
    """The extras `make setup` installs (the Makefile's `pip install -e ".[...]"`)."""
    found = re.findall(r'pip install .*-e "\.\[([A-Za-z0-9_,-]+)\]"', (ROOT / "Makefile").read_text())
    assert len(found) == 1, "the Makefile installs the project once"
    return set(found[0].split(","))


def _editable_extras(pip_lines: list[str]) -> set[str]:
    editable = [m for line in pip_lines if (m := _EDITABLE.match(line.strip()))]
    assert len(editable) == 1, f'the pip section installs the project once with -e ".[...]": {pip_lines}'
    return set(editable[0].group(1).split(","))


def _requirements(extras: set[str]) -> dict[str, Requirement]:
    """pyproject's dependencies plus those of ``extras``, by canonical name."""
    project = _pyproject()["project"]
    texts = list(project["dependencies"])
    for extra in sorted(extras):
        texts += project["optional-dependencies"][extra]
    requirements = [Requirement(text) for text in texts]
    return {canonicalize_name(r.name): r for r in requirements}


def test_the_pip_section_installs_the_project_with_the_extras_make_setup_installs() -> None:
    _, pip_lines = _environment()
    extras = _editable_extras(pip_lines)
    assert extras == _setup_extras()
    assert extras <= set(_pyproject()["project"]["optional-dependencies"])
    # Anything else from pip would be a second, unchecked list of dependencies.
    assert len(pip_lines) == 1


def test_every_conda_package_is_a_project_dependency_with_the_same_bounds() -> None:
    conda, pip_lines = _environment()
    declared = _requirements(_editable_extras(pip_lines))
    python_packages = [_split(spec) for spec in conda if _split(spec)[0] not in NOT_PYTHON_PACKAGES]
    assert python_packages, "environment.yml names no Python package; then this test checks nothing"
    for name, bounds in python_packages:
        pypi = canonicalize_name(CONDA_TO_PYPI.get(name, name))
        assert pypi in declared, f"environment.yml installs {name}, which pyproject.toml does not declare"
        assert bounds, f"environment.yml gives {name} no bounds; pyproject.toml has {declared[pypi]}"
        assert SpecifierSet(bounds) == declared[pypi].specifier, (
            f"{name}: environment.yml has {bounds}, pyproject.toml has {declared[pypi]}"
        )


def test_python_satisfies_requires_python_and_terraform_has_a_floor() -> None:
    conda, _ = _environment()
    specs = dict(_split(spec) for spec in conda)
    assert set(specs) >= NOT_PYTHON_PACKAGES
    python = specs["python"]
    assert python.startswith("=") and not python.startswith("=="), "python=X.Y, as conda writes it"
    assert Version(python[1:]) in SpecifierSet(_pyproject()["project"]["requires-python"])
    assert specs["terraform"].startswith(">=")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("boto3>=1.34,<2", ("boto3", ">=1.34,<2")), ("python=3.11", ("python", "=3.11")), ("pip", ("pip", ""))],
)
def test_conda_specs_are_read_as_name_and_bounds(spec: str, expected: tuple[str, str]) -> None:
    assert _split(spec) == expected


def _pins(path: Path) -> dict[str, Version]:
    """A pip-compile output's ``name==version`` lines (some with an environment marker), by name."""
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.partition(";")[0].partition("==")  # name==version[ ; marker]
            assert version, f"{path.name}: {line!r} is not a pin (name==version)"
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def test_every_dependency_make_setup_installs_is_pinned_within_its_bounds() -> None:
    """requirements/lock.txt (`make lock`) pins each direct dependency at a version pyproject.toml
    allows: a dependency added or re-bounded without `make lock` fails here, not in pip's resolver
    on a fresh clone (or, unpinned, by a release that came out after the suite last passed)."""
    pins = _pins(ROOT / "requirements" / "lock.txt")
    declared = [r for r in _requirements(_setup_extras()).values() if r.marker is None or r.marker.evaluate()]
    assert len(declared) > 20, "pyproject.toml's dependencies were not read"
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not pinned in requirements/lock.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/lock.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: "
            "run `make lock`"
        )
