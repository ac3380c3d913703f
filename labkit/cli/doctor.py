"""`labkit doctor`."""

from __future__ import annotations

import typer

from labkit.lab.doctor import run_checks

_MARK = {True: "ok  ", False: "FAIL", None: "info"}


def doctor(
    target: str = typer.Option("sandbox", help="sandbox or aws (aws also checks your caller identity)."),
    profile: str = typer.Option(None, help="AWS profile for --target aws."),
) -> None:
    """Check Python, Terraform, the AWS provider source, the sandbox and (for aws) credentials."""
    checks = run_checks(target, profile=profile)
    for check in checks:
        typer.echo(f"[{_MARK[check.ok]}] {check.name:<13} {check.detail}")
        if check.fix and check.ok is not True:
            typer.echo(f"       fix: {check.fix}")
    if any(c.ok is False for c in checks):
        raise typer.Exit(1)
