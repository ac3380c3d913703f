"""The ``labkit`` command line. Each command group lives in its own module beside this one.

The root options (``--target``, ``--region``, ``--profile``, ``--endpoint-url``, ``--allow-spend``)
come before the command, once for all of them: ``labkit --target aws --allow-spend stack apply
staging``. Exit codes are :class:`ExitCode` (labkit.cli.context), mapped from the errors in one place.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from labkit.cli.app import app_cli
from labkit.cli.ci import ci_app
from labkit.cli.context import EXIT_CODES_TEXT, ExitCode, TargetChoice, Where, exit_code_for
from labkit.cli.db import db_app
from labkit.cli.delivery import github_app, notify_app
from labkit.cli.deploy import deploy_app, rollback
from labkit.cli.doctor import doctor
from labkit.cli.drill import drill_app
from labkit.cli.env import env_app
from labkit.cli.inventory import inventory_app
from labkit.cli.ledger import ledger
from labkit.cli.probe import probe
from labkit.cli.release import release_app
from labkit.cli.report import report
from labkit.cli.run import RUN_CONTEXT, run
from labkit.cli.runbook import runbook_app
from labkit.cli.sandbox import sandbox_app
from labkit.cli.stack import stack_app
from labkit.errors import LabkitError

__all__ = ["ExitCode", "app", "main"]

HELP = "Blue/Green Lab: build, deploy, break and measure a blue/green stack (sandbox or AWS)."

app = typer.Typer(
    name="labkit",
    help=HELP,
    epilog=EXIT_CODES_TEXT,
    no_args_is_help=True,
    add_completion=True,
    # Plain help text: rendering it with rich costs about half a second of imports (typer.rich_utils),
    # more than everything else `labkit --help` loads (bench/cli_startup.py).
    rich_markup_mode=None,
)
app.command()(doctor)
app.add_typer(release_app, name="release")
app.add_typer(app_cli, name="app")
app.command(context_settings=RUN_CONTEXT)(run)
app.command()(report)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(stack_app, name="stack")
app.add_typer(env_app, name="env")
app.add_typer(inventory_app, name="inventory")
app.command()(probe)
app.command()(ledger)
app.add_typer(deploy_app, name="deploy")
app.add_typer(db_app, name="db")
app.command()(rollback)
app.add_typer(runbook_app, name="runbook")
app.add_typer(drill_app, name="drill")
app.add_typer(ci_app, name="ci")
app.add_typer(github_app, name="github")
app.add_typer(notify_app, name="notify")


def labkit_version() -> str:
    try:
        return package_version("labkit")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"labkit {labkit_version()}")
        raise typer.Exit()


@app.callback(epilog=EXIT_CODES_TEXT)
def _root(
    ctx: typer.Context,
    target: Annotated[
        TargetChoice,
        typer.Option(
            envvar="LABKIT_TARGET", help="Where it runs: the offline sandbox or a real AWS account."
        ),
    ] = TargetChoice.sandbox,
    region: Annotated[
        str | None,
        typer.Option(
            envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
            help="AWS region for --target aws (default: your profile's). The sandbox has one region "
            "and ignores the variables.",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(envvar="AWS_PROFILE", help="AWS profile for --target aws (the sandbox ignores it)."),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            envvar="LABKIT_ENDPOINT_URL",
            help="Sandbox only: a running AWS endpoint on loopback, instead of the labkit sandbox.",
        ),
    ] = None,
    allow_spend: Annotated[
        bool,
        typer.Option(
            "--allow-spend",
            envvar="LABKIT_ALLOW_SPEND",
            help="Allow changes that cost money on --target aws (applies, deploys, uploads).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print labkit's version and exit."
        ),
    ] = False,
) -> None:
    """Blue/Green Lab: build, deploy, break and measure a blue/green stack (sandbox or AWS)."""
    from labkit.target import SANDBOX_REGION

    if target is TargetChoice.sandbox:
        # AWS_REGION and AWS_PROFILE describe the user's real account: the sandbox ignores them,
        # and refuses only what was asked for on its command line. (typer vendors its own click, so
        # the parameter source is compared by name.)
        source = ctx.get_parameter_source("region")
        if source is not None and source.name == "ENVIRONMENT":
            region = None
        if region not in (None, SANDBOX_REGION):
            raise typer.BadParameter(
                f"the sandbox is one region, {SANDBOX_REGION}; drop --region or use --target aws.",
                param_hint="--region",
            )
        profile = None
    elif endpoint_url is not None:
        raise typer.BadParameter(
            "--target aws uses AWS's own endpoints; --endpoint-url is for the sandbox.",
            param_hint="--endpoint-url",
        )
    ctx.obj = Where(
        target=target, region=region, profile=profile, endpoint_url=endpoint_url, allow_spend=allow_spend
    )


def main() -> None:
    """Console entry point: a LabkitError prints its message and hint, without a traceback, and
    exits with the code its kind maps to (see ExitCode)."""
    try:
        app()
    except LabkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(int(exit_code_for(exc)))
