"""What every ``labkit`` command shares: the root options (where it runs) and the exit codes.

The root callback in ``labkit.cli`` reads ``--target``, ``--region``, ``--profile``,
``--endpoint-url`` and ``--allow-spend`` once (or ``LABKIT_TARGET``, ``AWS_REGION``, ``AWS_PROFILE``,
``LABKIT_ENDPOINT_URL``, ``LABKIT_ALLOW_SPEND``) into a :class:`Where`, checks that they fit together
and builds nothing: a command builds its target with :func:`target` only once its own arguments are
checked, so a typo never starts the sandbox.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labkit.errors import ConfigError, DeploymentLockedError, LabkitError, StateLockedError

if TYPE_CHECKING:
    from labkit.target import Target


class ExitCode(enum.IntEnum):
    """What ``labkit`` exits with, so a script can tell the outcomes apart."""

    OK = 0
    ERROR = 1
    USAGE = 2
    ROLLED_BACK = 3
    LOCKED = 4


#: The table ``labkit --help`` and the README show (a test checks that both list every code).
EXIT_CODES_TEXT = (
    "Exit codes: 0 success; 1 error; 2 usage (a bad command, option or value); "
    "3 deployment rolled back; 4 lock held by someone else."
)


def exit_code_for(exc: LabkitError) -> ExitCode:
    """The one mapping from labkit's errors to exit codes."""
    if isinstance(exc, DeploymentLockedError | StateLockedError):
        return ExitCode.LOCKED
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    return ExitCode.ERROR


class TargetChoice(enum.StrEnum):
    """Where the lab runs (``--target``)."""

    sandbox = "sandbox"
    aws = "aws"


@dataclass(frozen=True)
class Where:
    """The root options: which target, and how to reach it."""

    target: TargetChoice = TargetChoice.sandbox
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    allow_spend: bool = False

    @property
    def is_sandbox(self) -> bool:
        return self.target is TargetChoice.sandbox


def where(ctx: typer.Context) -> Where:
    """The root options of this invocation (the defaults when a group runs on its own)."""
    found = ctx.find_object(Where)
    return found if found is not None else Where()


def target(ctx: typer.Context) -> Target:
    """The target the root options name. On the sandbox with no ``--endpoint-url`` this starts it
    when it is not running (:func:`labkit.sandbox.target`, through ``ensure_up``): a Target itself
    starts nothing."""
    from labkit import sandbox
    from labkit.target import get_target

    chosen = where(ctx)
    if chosen.is_sandbox and chosen.endpoint_url is None:
        return sandbox.target(region=chosen.region)
    return get_target(
        chosen.target.value,
        region=chosen.region,
        profile=chosen.profile,
        allow_spend=chosen.allow_spend,
        endpoint_url=chosen.endpoint_url,
        alb_urls=sandbox.alb_url if chosen.is_sandbox else None,
    )


def echo_json(value: Any) -> None:
    """Print ``value`` (dataclasses, datetimes and enums included) as one JSON document."""
    typer.echo(json.dumps(_plain(value), indent=2, sort_keys=True))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


#: ``--json`` on every command that prints state.
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
