"""`labkit doctor`: is this machine ready for the lab? Each problem comes with its fix."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from labkit.errors import LabkitError
from labkit.infra.terraform import INSTALL_HINT, mirrored_providers, terraform_binary, terraform_version
from labkit.settings import plugin_mirror

MIN_PYTHON = (3, 11)
MIN_TERRAFORM = (1, 6)
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report. ``ok`` is None for information that is neither."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("-")[0].split(".")[:2] if p.isdigit())


def check_python() -> Check:
    version = ".".join(str(p) for p in sys.version_info[:3])
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check("python", ok, version, "" if ok else "Use Python 3.11 or newer.")


def check_terraform() -> Check:
    try:
        path = terraform_binary()
        version = terraform_version()
    except LabkitError as exc:
        return Check("terraform", False, exc.message, exc.hint or INSTALL_HINT)
    ok = _version_tuple(version) >= MIN_TERRAFORM
    return Check("terraform", ok, f"{version} at {path}", "" if ok else "Upgrade to Terraform 1.6 or newer.")


def check_provider_source() -> Check:
    try:
        mirror = plugin_mirror()
    except LabkitError as exc:
        return Check("aws provider", False, exc.message, exc.hint or "")
    if mirror is None:
        return Check("aws provider", None, "downloaded from the Terraform registry on first init")
    if AWS_PROVIDER in mirrored_providers(mirror):
        return Check("aws provider", True, f"from the mirror at {mirror}")
    return Check(
        "aws provider",
        False,
        f"the mirror at {mirror} has no {AWS_PROVIDER}",
        "Add the provider to the mirror (`terraform providers mirror DIR`) or unset LABKIT_TF_PLUGIN_MIRROR.",
    )


def check_kernel() -> Check:
    """Whether JupyterLab started from this venv finds the lab's kernel, running this venv's Python.

    JupyterLab searches the user's kernel folder before the venv's, so a stale user-level kernelspec
    of the same name would win: that is reported too.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from labkit.lab.check import KERNEL_DISPLAY_NAME, KERNEL_NAME
    from labkit.lab.run import runs_this_interpreter

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return Check(
            "jupyter kernel",
            False,
            f"JupyterLab would not find the '{KERNEL_DISPLAY_NAME}' kernel ({KERNEL_NAME})",
            "Run `make setup`: it registers the kernel in the project's venv.",
        )
    if not runs_this_interpreter(spec.argv):
        return Check(
            "jupyter kernel",
            False,
            f"'{KERNEL_NAME}' at {spec.resource_dir} runs {spec.argv[0] if spec.argv else '?'}, "
            f"not this venv's Python ({sys.executable})",
            f"Remove {spec.resource_dir} (a user-level kernelspec wins over the venv's), then `make setup`.",
        )
    return Check("jupyter kernel", True, f"'{KERNEL_DISPLAY_NAME}' ({KERNEL_NAME}) runs {sys.executable}")


def check_sandbox() -> Check:
    from labkit.sandbox import describe_status

    running, detail = describe_status()
    return Check("sandbox", True if running else None, detail, "" if running else "`labkit sandbox up`")


def check_aws_identity(profile: str | None = None) -> Check:
    from labkit.target import aws

    try:
        ident = aws(profile=profile).client("sts").get_caller_identity()
    except LabkitError as exc:
        return Check("aws identity", False, exc.message, exc.hint or "")
    except Exception as exc:  # botocore raises many types for missing or expired credentials
        return Check(
            "aws identity",
            False,
            f"{type(exc).__name__}: {exc}",
            "Configure credentials: `aws configure sso` or `aws configure`, or set AWS_PROFILE.",
        )
    return Check("aws identity", True, f"{ident['Arn']} (account {ident['Account']})")


def run_checks(target: str = "sandbox", *, profile: str | None = None) -> list[Check]:
    """Every check for ``target``; the aws identity is checked only for ``target="aws"``."""
    checks = [check_python(), check_terraform(), check_provider_source(), check_kernel(), check_sandbox()]
    if target == "aws":
        checks.append(check_aws_identity(profile))
    return checks
