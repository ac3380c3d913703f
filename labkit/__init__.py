"""labkit: the library behind the Blue/Green Lab's notebooks, runbooks and CLI.

Everything a notebook needs is importable from here; the modules behind it are small and named
for what they do.
"""

from __future__ import annotations

from .appserver import AppProcess, unpack_release
from .errors import (
    AppProcessError,
    ConfigError,
    LabkitError,
    ReleaseError,
    SandboxError,
    SpendNotAllowedError,
    TargetError,
    TerraformError,
    TerraformNotFoundError,
)
from .release import (
    build_release,
    parse_faults,
    read_artifact_manifest,
    release_exists,
    release_key,
    upload_release,
)
from .target import Target, get_target
from .terraform import ApplyResult, PlanResult, ResourceChange, StateLockedError, Terraform

__version__ = "0.1.0"

__all__ = [
    "AppProcess",
    "AppProcessError",
    "ApplyResult",
    "ConfigError",
    "LabkitError",
    "PlanResult",
    "ReleaseError",
    "ResourceChange",
    "SandboxError",
    "SpendNotAllowedError",
    "StateLockedError",
    "Target",
    "TargetError",
    "Terraform",
    "TerraformError",
    "TerraformNotFoundError",
    "build_release",
    "get_target",
    "parse_faults",
    "read_artifact_manifest",
    "release_exists",
    "release_key",
    "unpack_release",
    "upload_release",
]
