"""What the sandbox turns off, in one place: every Terraform setting whose sandbox value differs from
its value on AWS, with the reason.

:class:`labkit.infra.stack.Stack` fills in the roots' variables (:func:`variables`) and the S3
backend's settings (:func:`backend_settings`) from :data:`SANDBOX_OFF` alone, and the table in
``terraform/README.md`` is :func:`markdown_table` (a unit test compares the two). Everything not
listed here is the same on both targets; ``tests/integration/test_aws_path.py`` applies global,
staging and production with every AWS value against moto's server standing in for AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from labkit.target import Target

#: Where a setting goes: a root's input variable, or a ``-backend-config`` setting of the S3 backend.
SettingKind = Literal["variable", "backend"]
#: Which roots take it: ``global``, the blue/green ones (staging, production, ``dev-*``), or every root.
Scope = Literal["global", "app", "every"]
#: What a root is, as far as these settings go.
RootKind = Literal["global", "app"]


@dataclass(frozen=True)
class SandboxOff:
    """One setting the sandbox sets otherwise than AWS. ``aws`` None: left unset on AWS (the
    backend's default)."""

    name: str
    kind: SettingKind
    scope: Scope
    aws: bool | None
    sandbox: bool
    reason: str

    def value(self, target: Target) -> bool | None:
        return self.sandbox if target.is_sandbox else self.aws

    def applies_to(self, scope: RootKind) -> bool:
        return self.scope in (scope, "every")


def _listed(*settings: SandboxOff) -> Mapping[str, SandboxOff]:
    return {setting.name: setting for setting in settings}


SANDBOX_OFF: Mapping[str, SandboxOff] = _listed(
    SandboxOff(
        "require_tls",
        "variable",
        "global",
        aws=True,
        sandbox=False,
        reason="The sandbox's endpoint is plain HTTP on loopback, which the TLS-only bucket policy on the "
        "state and artifact buckets refuses (as it should).",
    ),
    SandboxOff(
        "enable_budget",
        "variable",
        "every",
        aws=True,
        sandbox=False,
        reason="The sandbox has no billing, so a cost budget would never notify. global takes it too: "
        "the GitHub roles get rights on budgets only where the app roots have one.",
    ),
    SandboxOff(
        "use_path_style",
        "backend",
        "every",
        aws=None,
        sandbox=True,
        reason="Every sandbox bucket is served on one loopback address, where a bucket's virtual-host "
        "name (BUCKET.localhost) need not resolve.",
    ),
    SandboxOff(
        "skip_credentials_validation",
        "backend",
        "every",
        aws=None,
        sandbox=True,
        reason="The sandbox target signs with fixed test credentials: checking them with STS at every "
        "command would prove nothing.",
    ),
    SandboxOff(
        "skip_requesting_account_id",
        "backend",
        "every",
        aws=None,
        sandbox=True,
        reason="The backend needs no account id, and the sandbox's is fixed.",
    ),
    SandboxOff(
        "skip_metadata_api_check",
        "backend",
        "every",
        aws=None,
        sandbox=True,
        reason="The sandbox's credentials come from the environment; nothing it runs may ask the EC2 "
        "metadata endpoint, which is not on loopback.",
    ),
)


def _settings(kind: SettingKind, scope: RootKind, target: Target) -> dict[str, bool]:
    chosen = (s for s in SANDBOX_OFF.values() if s.kind == kind and s.applies_to(scope))
    return {s.name: value for s in chosen if (value := s.value(target)) is not None}


def variables(scope: RootKind, target: Target) -> dict[str, bool]:
    """The input variables that ``target`` sets for a root of ``scope``."""
    return _settings("variable", scope, target)


def backend_settings(scope: RootKind, target: Target) -> dict[str, str]:
    """The S3 backend settings that ``target`` adds for a root of ``scope``, as ``-backend-config``
    strings (none on AWS)."""
    return {name: str(value).lower() for name, value in _settings("backend", scope, target).items()}


def markdown_table() -> str:
    """The list as the Markdown table in ``terraform/README.md``."""

    def shown(value: bool | None) -> str:
        return "unset" if value is None else f"`{str(value).lower()}`"

    where = {"global": "global", "app": "staging, production, dev-*", "every": "every root"}
    rows = [
        "| setting | kind | roots | AWS | sandbox | why |",
        "|---------|------|-------|-----|---------|-----|",
        *(
            f"| `{s.name}` | {s.kind} | {where[s.scope]} | {shown(s.aws)} | {shown(s.sandbox)} | {s.reason} |"
            for s in SANDBOX_OFF.values()
        ),
    ]
    return "\n".join(rows) + "\n"
