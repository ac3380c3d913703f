"""`labkit inventory orphans ENV`: what an environment has in the account that no Terraform state holds."""

from __future__ import annotations

import typer

from labkit.cli.context import AsJson, echo_json, target
from labkit.cli.stack import Env

inventory_app = typer.Typer(
    help="What the account holds for an environment, compared with Terraform's state.", no_args_is_help=True
)

#: The exit status when orphans are found, as `terraform plan -detailed-exitcode` exits 2 on changes.
ORPHANS_FOUND = 2


@inventory_app.command()
def orphans(ctx: typer.Context, env: Env, as_json: AsJson = False) -> None:
    """Resources in ENV's VPC or tagged with it (Project, Environment) that no environment's state
    holds (global, staging, production), with how each was found. Exits 0 when there are none, 2 when
    there are, 1 on an error. `labkit runbook run adopt-or-remove-orphans` adopts or removes them."""
    from labkit.infra.inventory import find_orphans

    report = find_orphans(target(ctx), env)
    if as_json:
        echo_json(report.to_json())
    else:
        for line in report.lines():
            typer.echo(line)
        if report.orphans:
            typer.echo(
                f"Adopt or remove them: labkit runbook run adopt-or-remove-orphans -p environment {env} "
                "(a dry run; -p decision adopt|remove)"
            )
    if report.orphans:
        raise typer.Exit(ORPHANS_FOUND)
