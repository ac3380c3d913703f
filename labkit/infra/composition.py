"""Releases of the composition module, and which one each environment root is pinned to.

The composition is ``modules/bluegreen_environment`` and the modules it calls. Both environment
roots call it as ``./composition/bluegreen_environment`` (``terraform/shared/bluegreen_root/
composition.tf``), and each root's ``composition`` is a link to a folder of modules, its *pin*:

- staging's links ``../../modules``, the working tree, so a module change reaches staging at its
  next apply;
- production's links a released copy, ``../../releases/bluegreen_environment/vX.Y.Z``, made by
  :func:`cut_release` and never edited afterwards, so nothing reaches production before
  ``promote-composition`` moves the link (:func:`move_pin`).

A versioned copy rather than a git tag (``git::file://...?ref=vX``): a ``file://`` source needs
the clone's absolute path in the code, CI's shallow clones carry no tags, and the tests run Terraform
in copies of ``terraform/`` that are no git repository; a folder in the tree works offline, in CI
and in every copy alike.

A release is named by ``bluegreen_environment/VERSION`` and identified by a digest of every file it
runs; the module reports both in its ``release`` output (the roots' ``composition`` output), which
Terraform computes the same way as :func:`digest`. So an environment's state proves which release it
was applied from, and an edit made after a release shows as a different digest under the same version.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import StackError
from labkit.settings import terraform_dir

#: The composition module and the modules it calls: what a release copies.
MODULES = ("bluegreen_environment", "network", "alb", "fleet", "monitoring", "database")
#: The name of each root's pin, a link to a folder holding :data:`MODULES`.
PIN = "composition"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def releases_dir() -> Path:
    """``terraform/releases/bluegreen_environment``: one folder per release, ``vX.Y.Z``."""
    return terraform_dir() / "releases" / "bluegreen_environment"


def release_files(folder: Path) -> list[str]:
    """The files of a composition under ``folder`` that it runs, relative and sorted as Terraform's
    ``fileset`` patterns in the module's ``release_files`` local list them."""
    found = {
        path.relative_to(folder).as_posix()
        for module in MODULES
        for pattern in ("*.tf", "templates/*")
        for path in (folder / module).glob(pattern)
        if path.is_file()
    }
    if (folder / "bluegreen_environment" / "VERSION").is_file():
        found.add("bluegreen_environment/VERSION")
    return sorted(found)


def digest(folder: Path) -> str:
    """The composition's digest under ``folder``, as its ``release`` output computes it."""
    lines = [
        f"{name} {hashlib.sha256((folder / name).read_bytes()).hexdigest()}"
        for name in release_files(folder)
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def version_of(folder: Path) -> str:
    """The version a composition under ``folder`` declares (its ``VERSION`` file)."""
    path = folder / "bluegreen_environment" / "VERSION"
    if not path.is_file():
        raise StackError(f"{folder} holds no composition (no {path.relative_to(folder)}).", hint=_LAYOUT)
    return path.read_text().strip()


@dataclass(frozen=True)
class Pin:
    """Which composition an environment root runs: ``link`` as written (relative to the root),
    the ``version`` and ``digest`` of what it points at, and whether that is the working tree."""

    environment: str
    link: str
    version: str
    digest: str
    working_tree: bool
    #: Whether its files are exactly those of the release it declares (vVERSION in releases/).
    released: bool

    def describe(self) -> str:
        where = "the working tree (terraform/modules)" if self.working_tree else f"release v{self.version}"
        note = "" if self.released else f", which no release holds as is (digest {self.digest[:12]})"
        if self.working_tree and self.released:
            note = f", identical to release v{self.version}"
        return f"{self.environment}: composition {self.version} from {where}{note}"

    def to_json(self) -> dict[str, object]:
        return {
            "link": self.link,
            "version": self.version,
            "digest": self.digest,
            "working_tree": self.working_tree,
            "released": self.released,
        }


def pin(environment: str) -> Pin:
    """The pin of ``environment``'s root (see the module doc)."""
    link = terraform_dir() / "environments" / environment / PIN
    if not link.exists():
        raise StackError(f"{environment}'s root has no {PIN} link to a folder of modules.", hint=_LAYOUT)
    folder = link.resolve()
    version, found = version_of(folder), digest(folder)
    release = releases_dir() / f"v{version}"
    released = release.is_dir() and digest(release) == found
    working_tree = folder == (terraform_dir() / "modules").resolve()
    written = os.readlink(link) if link.is_symlink() else PIN
    return Pin(environment, written, version, found, working_tree, released)


def released_versions() -> list[str]:
    """Every release in :func:`releases_dir`, oldest first."""
    if not releases_dir().is_dir():
        return []
    names = [p.name[1:] for p in releases_dir().iterdir() if p.is_dir() and _VERSION.match(p.name[1:])]
    return sorted(names, key=lambda v: tuple(int(n) for n in v.split(".")))


def cut_release(version: str | None = None) -> Path:
    """Copy the working tree's composition into ``releases/bluegreen_environment/vVERSION`` (the
    version its ``VERSION`` file declares); a release is never overwritten."""
    source = terraform_dir() / "modules"
    declared = version_of(source)
    version = version or declared
    if version != declared or not _VERSION.match(version):
        raise StackError(
            f"Cannot release composition {version!r}: terraform/modules/bluegreen_environment/VERSION says "
            f"{declared!r}.",
            hint="Write the new version (X.Y.Z) into that VERSION file first, then release it.",
        )
    folder = releases_dir() / f"v{version}"
    if folder.exists():
        raise StackError(
            f"Release v{version} of the composition exists already ({folder}); releases are never changed.",
            hint="Bump terraform/modules/bluegreen_environment/VERSION and release that version.",
        )
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for name in release_files(source):
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, partial / name)
    partial.rename(folder)  # whole or not at all
    return folder


def move_pin(environment: str, version: str) -> Pin:
    """Point ``environment``'s root at release ``version`` (the link replaced in one rename)."""
    release = releases_dir() / f"v{version}"
    if not release.is_dir():
        raise StackError(
            f"There is no release v{version} of the composition ({release}).",
            hint=f"Releases: {', '.join(released_versions()) or 'none'}; make one with "
            "labkit.infra.composition.cut_release().",
        )
    root = terraform_dir() / "environments" / environment
    link = root / PIN
    if link.exists() and not link.is_symlink():
        raise StackError(
            f"{link} is a folder, not a link, so it pins nothing (a copy of terraform/ made without "
            "keeping links?).",
            hint="Copy terraform/ keeping its symbolic links (cp -a, shutil.copytree(symlinks=True)).",
        )
    temporary = root / f".{PIN}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(os.path.relpath(release, root))
    temporary.replace(link)
    return pin(environment)


_LAYOUT = (
    "Each environment root links composition to a folder of modules (staging: ../../modules, production: "
    "../../releases/bluegreen_environment/vX.Y.Z); see terraform/README.md."
)
