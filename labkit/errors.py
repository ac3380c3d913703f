"""One exception root for everything labkit raises on purpose.

Every subclass carries a message that says what went wrong *and* what to do next, so a
notebook cell or a CLI command can print it as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .notebook_run import RunReport


class LabkitError(Exception):
    """Root of every error labkit raises on purpose.

    ``hint`` is the next step for the reader; it is appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)


class ConfigError(LabkitError):
    """A setting, parameter or input file is invalid."""


class TargetError(LabkitError):
    """The chosen target (sandbox or aws) cannot be used as asked."""


class SpendNotAllowedError(TargetError):
    """An action would create billable resources on AWS without the explicit opt-in."""


class TerraformNotFoundError(LabkitError):
    """No Terraform binary on PATH."""


class TerraformError(LabkitError):
    """A Terraform command failed; ``diagnostics`` holds Terraform's own messages."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        diagnostics: list[str] | None = None,
        returncode: int | None = None,
    ) -> None:
        self.diagnostics = diagnostics or []
        self.returncode = returncode
        detail = "\n".join(self.diagnostics)
        super().__init__(f"{message}\n{detail}" if detail else message, hint=hint)


class SandboxError(LabkitError):
    """The sandbox could not be started, reached or stopped."""


class ReleaseError(LabkitError):
    """A release could not be built, validated or uploaded."""


class LedgerError(LabkitError):
    """The deployment ledger (DynamoDB) could not be read or written as asked."""


class DeploymentLockedError(LedgerError):
    """Another deployment holds the environment's deployment lock."""


class DeploymentLockLostError(DeploymentLockedError):
    """Another process took over this controller's deployment lock; it must stop changing anything."""


class ProbeError(LabkitError):
    """The load probe was asked for something it refuses or cannot do."""


class AnalysisError(LabkitError):
    """The analysis gate could not gather its inputs (metrics, target health, alarms)."""


class AppProcessError(LabkitError):
    """A release app process could not be started or stopped."""


class NotebookRunError(LabkitError):
    """A notebook failed under ``labkit run``; ``report`` names the failing cell and the executed copies."""

    def __init__(self, message: str, *, hint: str | None = None, report: RunReport | None = None) -> None:
        self.report = report
        super().__init__(message, hint=hint)


class StackError(LabkitError):
    """A Terraform environment (global, staging, production) cannot be planned, applied or destroyed as
    asked."""


class CostError(LabkitError):
    """The cost model cannot price what it was given (unreadable input, a missing price entry)."""


class PlotInputError(ConfigError):
    """A plot was given a table without the columns, types or rows it needs."""


class DeployError(LabkitError):
    """A deployment cannot start, continue or roll back as asked (the message says why)."""


class LessonOrderError(LabkitError):
    """A notebook needs what an earlier lesson builds, and it is not there."""
