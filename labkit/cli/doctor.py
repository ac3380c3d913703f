"""`labkit doctor`."""

from __future__ import annotations

import typer

from labkit.cli.context import AsJson, ExitCode, echo_json, where
from labkit.lab.doctor import run_checks

_MARK = {True: "ok  ", False: "FAIL", None: "info"}


def doctor(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Check Python, Terraform, the AWS provider source, the sandbox and (for --target aws) your
    credentials and the headroom of each service quota the lab uses. Exits 1 when a check fails."""
    chosen = where(ctx)
    checks = run_checks(chosen.target.value, profile=chosen.profile)
    if as_json:
        echo_json(checks)
    else:
        for check in checks:
            typer.echo(f"[{_MARK[check.ok]}] {check.name:<16} {check.detail}")
            if check.fix and check.ok is not True:
                typer.echo(f"       fix: {check.fix}")
    if any(c.ok is False for c in checks):
        raise typer.Exit(ExitCode.ERROR)
