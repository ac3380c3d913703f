"""Where labkit keeps its files and which settings come from the environment.

Settings are read from the environment each time they are asked for, so a test or a notebook
can change them with ``os.environ`` (or ``monkeypatch.setenv``) without reloading anything.

- ``LABKIT_HOME``: the folder for labkit's working files (sandbox state, logs, Terraform CLI
  config, unpacked releases). Default: ``.labkit/`` at the project root.
- ``LABKIT_RUN_DIR`` (:data:`RUN_DIR_ENV`): set by ``labkit run`` to the folder of its executed
  notebooks while they run; figures and command logs go there.
- ``LABKIT_TF_PLUGIN_MIRROR``: a folder laid out as a Terraform provider filesystem mirror. When
  set, Terraform installs providers found there from it and everything else directly.
- ``LABKIT_TERRAFORM_DIR`` (:data:`TERRAFORM_DIR_ENV`): a copy of ``terraform/`` to run instead of
  the checkout's. Code that labkit writes into an environment's root (the ``adopted.tf`` of the
  adopt-or-remove-orphans runbook) then lands in the copy: tests use it so that they never write
  into the folder that other test workers read.
- ``LABKIT_SANDBOX_IAM`` (:data:`SANDBOX_IAM_ENV`): ``enforce`` (the default) or ``off``, read when
  the sandbox starts. Enforced, every API call is authorized against the caller's IAM policies
  (labkit's own credentials are the sandbox's admin: see :mod:`labkit.sandbox.server.iam`); ``off``
  lets any credentials do anything, as stock moto does. A running sandbox can be switched either
  way (``labkit.sandbox.set_iam_enforced``).
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from labkit.errors import ConfigError

#: The repository root: labkit is installed in editable mode from it, and the app, the
#: Terraform roots and the notebooks sit beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Names the folder of the current ``labkit run`` (labkit.lab.run), while it runs.
RUN_DIR_ENV = "LABKIT_RUN_DIR"
#: Names a copy of ``terraform/`` to use instead of the checkout's (see :func:`terraform_dir`).
TERRAFORM_DIR_ENV = "LABKIT_TERRAFORM_DIR"
#: Whether the sandbox enforces IAM (see :func:`sandbox_iam_enforced`).
SANDBOX_IAM_ENV = "LABKIT_SANDBOX_IAM"


def labkit_home() -> Path:
    """The folder for labkit's working files, created on first use."""
    home = Path(os.environ.get("LABKIT_HOME") or PROJECT_ROOT / ".labkit")
    home.mkdir(parents=True, exist_ok=True)
    return home


def plugin_mirror() -> Path | None:
    """The Terraform provider mirror folder, or None when Terraform should use the registry."""
    value = os.environ.get("LABKIT_TF_PLUGIN_MIRROR", "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"LABKIT_TF_PLUGIN_MIRROR is set to {value!r}, which is not a folder.",
            hint="Point it at a provider mirror (a folder holding registry.terraform.io/...) or unset it "
            "to let Terraform download providers from the registry.",
        )
    return path.resolve()


def app_dir() -> Path:
    """The source folder of the release app."""
    return PROJECT_ROOT / "app"


def terraform_dir() -> Path:
    """The folder holding ``modules/`` and ``environments/``: the checkout's ``terraform/``, or the
    copy ``LABKIT_TERRAFORM_DIR`` names."""
    value = os.environ.get(TERRAFORM_DIR_ENV, "").strip()
    if not value:
        return PROJECT_ROOT / "terraform"
    path = Path(value).expanduser()
    if not (path / "environments").is_dir():
        raise ConfigError(
            f"{TERRAFORM_DIR_ENV} is set to {value!r}, which holds no environments/ folder.",
            hint="Point it at a copy of the project's terraform/ folder, or unset it to use the checkout's.",
        )
    return path.resolve()


def user_at_host() -> str:
    """Who runs this process, as locks, claims and records name people: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def sandbox_iam_enforced() -> bool:
    """Whether a sandbox that starts now enforces IAM (``LABKIT_SANDBOX_IAM``: enforce, the default,
    or off)."""
    value = os.environ.get(SANDBOX_IAM_ENV, "").strip().lower() or "enforce"
    if value not in ("enforce", "off"):
        raise ConfigError(
            f"{SANDBOX_IAM_ENV} is set to {value!r}.",
            hint="Set it to enforce (IAM policies decide every call) or off (any credentials may do "
            "anything).",
        )
    return value == "enforce"
