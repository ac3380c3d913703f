"""One exception root for everything labkit raises, and every exception class labkit defines.

Every subclass carries a message that says what went wrong *and* what to do next, so a
notebook cell or a CLI command can print it as it is. This module is the foundation's bottom: it
imports nothing from labkit, and every layer imports it.

::

    LabkitError
    ├── ConfigError                  a setting, parameter or input file is invalid
    │   ├── PlotInputError           a plot's table lacks the columns, types or rows it needs
    │   └── TerraformDocumentError   JSON that is not a Terraform plan or state (infra.tfjson)
    ├── TargetError                  the sandbox or aws target cannot be used as asked
    │   └── SpendNotAllowedError     billable on AWS without allow_spend
    ├── TerraformNotFoundError       no terraform on PATH
    ├── TerraformError               a terraform command failed (infra.terraform)
    │   └── StateLockedError         another run holds the state lock
    ├── StackError                   an environment cannot be planned, applied or destroyed (infra.stack)
    │   ├── StalePlanError           a saved plan no longer matches its file, commit or state (infra.planfile)
    │   └── DeletionProtectedError   a destroy refused while the load balancer's deletion protection is on
    ├── CostError                    the cost model cannot price its input (infra.cost)
    ├── ReleaseError                 a release cannot be built, checked or uploaded (release.build)
    ├── AppProcessError              a release's app process cannot start or stop (release.appserver)
    ├── SandboxError                 the sandbox cannot start, be reached or stop (sandbox)
    │   ├── NoArtifactError          an instance's artifact is not in the sandbox's S3 (sandbox.server)
    │   ├── BadHttpMessage           bytes the load balancer cannot parse as HTTP/1.1 (sandbox.server.lb)
    │   ├── StateFileError           the saved AWS state cannot be loaded (sandbox.client.statefile)
    │   ├── SaveError                the AWS state cannot be pickled (sandbox.server.persistence)
    │   └── FinalSaveError           the sandbox stopped without saving its last state (sandbox.client)
    ├── DeployError                  a deployment cannot start, continue or roll back (deploy)
    │   ├── DeploymentFailed         the release failed a check: the deployment rolls back
    │   └── MigrationError           a release's migrations cannot run on a database (deploy.migrations)
    ├── LedgerError                  the deployment ledger cannot be read or written (deploy.ledger)
    │   ├── DeploymentLockedError    another deployment holds the environment's lock
    │   │   └── DeploymentLockLostError  another process took this controller's lock over
    │   └── ConditionalWriteFailed   a conditional write found the item changed (internal to the ledger)
    ├── ProbeError                   the load probe refuses what it was asked (deploy.probe)
    ├── AnalysisError                the analysis gate cannot gather its inputs (deploy.analysis)
    ├── RestoreError                 an environment cannot be rebuilt as asked (ops.restore)
    ├── NotebookRunError             a notebook failed under `labkit run` (lab.run)
    ├── SiteError                    a run folder cannot be built into its site (lab.report)
    ├── LessonOrderError             a notebook needs what an earlier lesson builds (lab.lesson)
    ├── RunbookError                 a runbook cannot run as asked (ops.runbook)
    │   ├── ConfirmationRequiredError  acting needs ``confirm`` equal to the environment's name
    │   ├── RunbookFailedError       a runbook's step or Verify check failed
    │   ├── StateRecoveryError       a state object cannot be restored as asked (ops.state)
    │   └── LockHolderAliveError     the state lock's holder may still run: no force-unlock (ops.locks)
    ├── DrillError                   a drill cannot inject, run or verify (ops.drill)
    ├── IdentityError                an ID token or credentials cannot be made or used (identity, cli.ci)
    │   └── WebIdentityRejected      STS refuses an ID token, with AWS's error code (identity.webidentity)
    └── DeliveryError                GitHub's REST API or a webhook refused or failed a call (delivery)

The layers (``lint-imports`` checks them; see ``[tool.importlinter]`` in pyproject.toml), top
first: ``cli``, ``ops`` (the runbook kit and the drills) beside ``delivery`` (GitHub and webhooks),
``lab``, ``deploy``, ``sandbox``, ``infra``, ``release``, and the foundation: ``target``,
``settings``, ``errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


class StateLockedError(TerraformError):
    """Another Terraform process holds the state lock."""


class SandboxError(LabkitError):
    """The sandbox could not be started, reached or stopped."""


class NoArtifactError(SandboxError):
    """The artifact an instance's user data names is not in the sandbox's S3."""


class BadHttpMessage(SandboxError):
    """The bytes are not a message the sandbox's load balancer understands; the connection cannot be
    reused."""


class StateFileError(SandboxError):
    """The sandbox's saved AWS state cannot be loaded: corrupt, truncated, or written by other versions.

    ``kept`` lists the generations kept beside it, each with when it was saved.
    """

    def __init__(self, path: Path, reason: str, detail: str, kept: Sequence[tuple[Path, str]] = ()) -> None:
        self.path, self.reason, self.detail = path, reason, detail
        listed = "".join(f"\n     {p}  (saved {saved})" for p, saved in kept)
        super().__init__(
            f"The sandbox's saved AWS state {path} cannot be loaded ({reason}): {detail}. "
            "The sandbox was not started and nothing was overwritten.",
            hint="Either start empty with `labkit sandbox up --reset` (the file is kept aside under a "
            "timestamp), or restore a kept generation with `labkit sandbox up --restore FILE`"
            + (f"; kept:{listed}" if listed else " (none is kept here)."),
        )


class SaveError(SandboxError):
    """The AWS state could not be pickled; ``where`` names the object that could not."""

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        super().__init__(
            f"Cannot save the sandbox's AWS state: {where}: {type(cause).__name__}: {cause}",
            hint="The last good save is kept; see `labkit sandbox status` and the service log.",
        )


class FinalSaveError(SandboxError):
    """The sandbox stopped without saving its last state."""


class ReleaseError(LabkitError):
    """A release could not be built, validated or uploaded."""


class LedgerError(LabkitError):
    """The deployment ledger (DynamoDB) could not be read or written as asked."""


class DeploymentLockedError(LedgerError):
    """Another deployment holds the environment's deployment lock."""


class ConditionalWriteFailed(LedgerError):
    """A conditional write found the item not as required (internal to the ledger, which turns it into
    a DeploymentLockedError or a LedgerError that says what changed)."""


class DeploymentLockLostError(DeploymentLockedError):
    """Another process took over this controller's deployment lock; it must stop changing anything."""


class ProbeError(LabkitError):
    """The load probe was asked for something it refuses or cannot do."""


class AnalysisError(LabkitError):
    """The analysis gate could not gather its inputs (metrics, target health, alarms)."""


class AppProcessError(LabkitError):
    """A release app process could not be started or stopped."""


class NotebookRunError(LabkitError):
    """A notebook failed under ``labkit run``; ``report`` (a :class:`labkit.lab.run.RunReport`) names
    the failing cell and the executed copies."""

    def __init__(self, message: str, *, hint: str | None = None, report: Any = None) -> None:
        # Typed Any: this module imports nothing from labkit, so the errors sit below every layer.
        self.report = report
        super().__init__(message, hint=hint)


class SiteError(LabkitError):
    """A run folder cannot be built into its static site (``labkit report``)."""


class StackError(LabkitError):
    """A Terraform environment (global, staging, production) cannot be planned, applied or destroyed as
    asked."""


class StalePlanError(StackError):
    """A saved plan may not be applied: its file, the checkout's commit or the state changed since it
    was made (or Terraform itself found it stale)."""


class DeletionProtectedError(StackError):
    """A destroy was refused before any change: the environment's load balancer has deletion
    protection on."""


class TerraformDocumentError(ConfigError):
    """A JSON document is not a Terraform plan or state that :mod:`labkit.infra.tfjson` can read."""


class CostError(LabkitError):
    """The cost model cannot price what it was given (unreadable input, a missing price entry)."""


class PlotInputError(ConfigError):
    """A plot was given a table without the columns, types or rows it needs."""


class DeployError(LabkitError):
    """A deployment cannot start, continue or roll back as asked (the message says why)."""


class DeploymentFailed(DeployError):
    """The release failed a check; the message is the reason the rollback records."""


class MigrationError(DeployError):
    """A release's schema migrations cannot run against an environment's database: it has none, the
    release is not published, or the migration command failed."""


class RestoreError(LabkitError):
    """An environment cannot be rebuilt as asked: nothing records the deployment to rebuild, or the
    rebuild did not end serving it."""


class DatabaseRestoreError(LabkitError):
    """An RDS instance's data cannot be restored as asked: no restore point, a name taken, or the
    restored instance never served."""


class LessonOrderError(LabkitError):
    """A notebook needs what an earlier lesson builds, and it is not there."""


class RunbookError(LabkitError):
    """A runbook cannot run as asked: an unknown runbook, bad parameters, no audit record."""


class ConfirmationRequiredError(RunbookError):
    """A runbook was asked to act on an environment without ``confirm`` set to its name."""


class RunbookFailedError(RunbookError):
    """A runbook's step raised, or one of its Verify checks found the environment not recovered."""


class StateRecoveryError(RunbookError):
    """An environment's state object cannot be read or restored as asked (no good version, an
    ambiguous lineage, a run holding the lock)."""


class LockHolderAliveError(RunbookError):
    """The Terraform state lock's holder is not proven gone, so the lock is not broken."""


class OrphanError(RunbookError):
    """Orphaned resources cannot be adopted or removed as asked (an unknown id in the decision, a
    kind labkit neither imports nor deletes, configuration Terraform could not generate)."""


class NameConflictError(RunbookError):
    """A resource Terraform wants to create exists already under its name, and cannot be resolved
    as asked (it belongs to another environment's state, or the decision is unknown)."""


class DrillError(LabkitError):
    """A drill cannot inject its fault, run its runbook or verify the recovery."""


class IdentityError(LabkitError):
    """An ID token cannot be obtained, read or exchanged for credentials."""


class WebIdentityRejected(IdentityError):
    """AssumeRoleWithWebIdentity refuses a token: ``code`` is AWS's error code for the reason
    (``InvalidIdentityToken``, ``ExpiredTokenException``, ``IDPRejectedClaim``, ``AccessDenied``)."""

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        self.code = code
        super().__init__(message, hint=hint)


class DeliveryError(LabkitError):
    """GitHub's REST API or a notification webhook refused a call, or could not be reached."""
