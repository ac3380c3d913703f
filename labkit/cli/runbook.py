"""`labkit runbook list|run`: the runbooks in runbooks/, run headless with papermill."""

from __future__ import annotations

from typing import Annotated

import typer

from labkit.cli.context import AsJson, ExitCode, echo_json, target
from labkit.cli.run import RUN_CONTEXT, parse_parameter_args

runbook_app = typer.Typer(
    help="Runbooks (runbooks/*.ipynb): list them, or run one headless with papermill.",
    no_args_is_help=True,
)


@runbook_app.command("list")
def list_runbooks(as_json: AsJson = False) -> None:
    """Each runbook: its name, what it fixes, and its parameters with their defaults."""
    from labkit.ops.execute import catalog

    runbooks = catalog()
    if as_json:
        echo_json([{"name": r.name, "fixes": r.fixes, "parameters": r.parameters} for r in runbooks])
        return
    if not runbooks:
        typer.echo("no runbooks in runbooks/")
    for r in runbooks:
        typer.echo(f"{r.name}\n  fixes: {r.fixes}")
        typer.echo("  parameters: " + ", ".join(f"{k}={v}" for k, v in r.parameters.items()))


@runbook_app.command("run", context_settings=RUN_CONTEXT)
def run_runbook(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The runbook's name (`labkit runbook list`).")],
    as_json: AsJson = False,
) -> None:
    """Run runbook NAME on the root options' target; -p NAME VALUE (repeatable) sets a parameter:
    -p environment staging -p dry_run false -p confirm staging (dry_run defaults to true). The
    executed copy goes under runs/runbooks/.
    Exits 0 when its Verify section passed (or its dry run listed the plan), 2 when it refused to act
    without confirm, 1 when it failed."""
    from labkit.ops.execute import run_runbook as run

    values = parse_parameter_args(ctx.args)
    if "target" in values:
        raise typer.BadParameter(
            "the target comes from the root option: `labkit --target aws runbook run ...`",
            param_hint="-p target",
        )
    result = run(name, target(ctx), values, reporter=lambda line: typer.echo(line, err=True))
    record = result.record
    if as_json:
        echo_json({"record": record.to_json(), "executed": str(result.executed)})
    else:
        for step in record.steps:
            typer.echo(f"  {step.section:<8} {step.outcome:<7} {step.duration_s:7.2f} s  {step.name}")
        typer.echo(f"{record.runbook} on {record.environment}: {record.outcome} ({record.summary})")
        typer.echo(f"executed copy: {result.executed}")
        if result.error is not None:
            typer.echo(str(result.error), err=True)
    if record.outcome == "refused":
        raise typer.Exit(ExitCode.USAGE)
    if not result.ok:
        raise typer.Exit(ExitCode.ERROR)
