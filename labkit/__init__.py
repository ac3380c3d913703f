"""labkit: the library behind the Blue/Green Lab's notebooks, runbooks and CLI.

Everything a notebook needs is importable from here; the modules behind it are small and named
for what they do.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    LabkitError,
    ReleaseError,
    SandboxError,
    SpendNotAllowedError,
    TargetError,
    TerraformError,
    TerraformNotFoundError,
)
from .target import Target, get_target
from .terraform import ApplyResult, PlanResult, ResourceChange, StateLockedError, Terraform

__version__ = "0.1.0"

__all__ = [
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
    "get_target",
]
