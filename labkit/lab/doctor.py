"""`labkit doctor`: is this machine ready for the lab? Each problem comes with its fix.

For ``--target aws`` it also reads usage against each service quota the lab's stacks use
(:func:`check_quotas`, read-only): one line per quota, failing where no headroom is left. Where
global is applied, the GitHub deploy role that its state holds must exist (:func:`check_deploy_role`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from labkit.errors import LabkitError
from labkit.infra.terraform import INSTALL_HINT, mirrored_providers, terraform_binary, terraform_version
from labkit.settings import plugin_mirror
from labkit.target import Target

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


def check_quotas(target: Target) -> list[Check]:
    """Usage against each service quota in the target's region (the quota-check runbook's table):
    one check per quota, failing where no headroom is left (the next create is refused)."""
    from labkit.infra.quotas import usage

    try:
        table = usage(target)
    except Exception as exc:  # botocore raises many types for missing permissions
        return [
            Check(
                "quotas",
                False,
                f"{type(exc).__name__}: {exc}",
                "Reading quotas needs servicequotas:GetServiceQuota and the EC2/ELB Describe calls.",
            )
        ]
    return [_quota_check(row) for row in table.to_dict("records")]


def _quota_check(row: dict[Any, Any]) -> Check:
    left, code, service = float(row["headroom"]), str(row["code"]), str(row["service"])
    used = f"{float(row['usage']):g} of {float(row['value']):g} {row['counts']} used"
    request = (
        f"`aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code} "
        "--desired-value N` (the quota-check runbook files it)"
    )
    detail = f"{row['quota']}: {used}, {left:g} left (AWS default {float(row['aws_default']):g})"
    return Check(f"quota {code}", left > 0, detail, "" if left > 0 else request)


def check_deploy_role(target: Target) -> Check | None:
    """The deploy role that global's state names still exists in IAM; None where global is not
    applied or has no deploy role (nothing to check)."""
    from botocore.exceptions import ClientError

    from labkit.infra.stack import Stack

    try:
        role = Stack("global", target, reporter=None).outputs().get("github_deploy_role_arn")
    except LabkitError:  # no state bucket or state: global is not applied
        return None
    if not role:
        return None
    name = str(role).rsplit("/", 1)[-1]
    try:
        target.client("iam").get_role(RoleName=name)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        fix = (
            "Apply global's code for it: `labkit runbook run fix-oidc-trust -p environment global` "
            "(a dry run shows the plan; then -p dry_run false -p confirm global)."
        )
        return Check("deploy role", False, f"{name}, in global's state, is missing from IAM ({code})", fix)
    return Check("deploy role", True, f"{name} exists, as global's state says")


def run_checks(target: str = "sandbox", *, profile: str | None = None) -> list[Check]:
    """Every check for ``target``; the aws identity, and then usage against each service quota, are
    checked only for ``target="aws"``."""
    checks = [check_python(), check_terraform(), check_provider_source(), check_kernel(), check_sandbox()]
    chosen: Target | None = None
    if target == "aws":
        identity = check_aws_identity(profile)
        checks.append(identity)
        if identity.ok:
            from labkit.target import aws

            chosen = aws(profile=profile)
            checks += check_quotas(chosen)
    elif checks[-1].ok:  # the sandbox runs
        from labkit.sandbox import target as sandbox_target

        chosen = sandbox_target()
    if chosen is not None and (role := check_deploy_role(chosen)) is not None:
        checks.append(role)
    return checks
