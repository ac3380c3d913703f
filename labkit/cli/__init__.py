"""The ``labkit`` command line. Each command group lives in its own module beside this one."""

from __future__ import annotations

import sys

import typer

from labkit.cli.app import app_cli
from labkit.cli.deploy import deploy_app, rollback
from labkit.cli.doctor import doctor
from labkit.cli.ledger import ledger
from labkit.cli.probe import probe
from labkit.cli.release import release_app
from labkit.cli.report import report
from labkit.cli.run import RUN_CONTEXT, run
from labkit.cli.sandbox import sandbox_app
from labkit.cli.stack import stack_app
from labkit.errors import LabkitError

app = typer.Typer(
    name="labkit",
    help="Blue/Green Lab: build, deploy, break and measure a blue/green stack (sandbox or AWS).",
    no_args_is_help=True,
    add_completion=False,
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
app.command()(probe)
app.command()(ledger)
app.add_typer(deploy_app, name="deploy")
app.command()(rollback)


@app.callback()
def _root() -> None:
    """Blue/Green Lab: build, deploy, break and measure a blue/green stack (sandbox or AWS)."""


def main() -> None:
    """Console entry point: a LabkitError prints its message and hint, without a traceback."""
    try:
        app()
    except LabkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
