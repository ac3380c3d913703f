"""`labkit drill list|inject|run|export`: the disaster drills (labkit/ops/drills/)."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from labkit.cli.context import AsJson, ExitCode, echo_json, target
from labkit.cli.run import RUN_CONTEXT, parse_parameter_args

drill_app = typer.Typer(
    help="Disaster drills: break the sandbox as the disaster happens in life, recover, and measure.",
    no_args_is_help=True,
)

Confirm = Annotated[
    str,
    typer.Option(help="On --target aws: the environment's name, with --allow-spend. Unused on the sandbox."),
]
EnvOption = Annotated[str, typer.Option("--env", help="The environment to break (staging by default).")]


@drill_app.command("list")
def list_drills(as_json: AsJson = False) -> None:
    """Each drill: what it breaks and the runbook that recovers it."""
    from labkit.ops.drills import all_drills

    found = all_drills()
    if as_json:
        echo_json([{"name": d.name, "summary": d.summary, "runbook": d.runbook} for d in found.values()])
        return
    for d in found.values():
        typer.echo(f"{d.name}\n  {d.summary}\n  recovered by: {d.runbook or '(nothing to recover)'}")


@drill_app.command(context_settings=RUN_CONTEXT)
def inject(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The drill (`labkit drill list`).")],
    env: Annotated[str, typer.Argument(help="The environment to break.")],
    confirm: Confirm = "",
    as_json: AsJson = False,
) -> None:
    """Only break ENV as drill NAME does (-p NAME VALUE: the injector's arguments, e.g. -p variant
    truncated), and print what was done; recover it yourself with the
    drill's runbook (`labkit runbook run ...`)."""
    from labkit.ops.drill import get
    from labkit.ops.drill import inject as do_inject

    facts = do_inject(name, target(ctx), env, parse_parameter_args(ctx.args), confirm=confirm)
    if as_json:
        echo_json(facts)
        return
    typer.echo(json.dumps(facts, indent=2, default=str))
    drill = get(name)
    if drill.runbook:
        # The runbook's own environment (global's roles for the identity drills) and the parameters
        # the drill's run would give it, quoted for a shell.
        parameters = {"environment": drill.runbook_environment or env, **drill.runbook_parameters(facts)}
        given = " ".join(f"-p {key} {shlex.quote(str(value))}" for key, value in parameters.items())
        typer.echo(f"recover it with: labkit runbook run {drill.runbook} {given}  (a dry run first)")


@drill_app.command(context_settings=RUN_CONTEXT)
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The drill (`labkit drill list`).")],
    env: EnvOption = "staging",
    confirm: Confirm = "",
    probe_rate: Annotated[float, typer.Option(help="Requests per second through the ALB meanwhile.")] = 20.0,
    as_json: AsJson = False,
) -> None:
    """Inject drill NAME (-p NAME VALUE: the injector's arguments), run its runbook headless (dry
    run, then confirmed), verify with checks the runbook did not write, and print time to detect,
    time to recover, failed requests and lost state versions. Exits 1 when the environment was not
    verified recovered."""
    from labkit.ops.drill import run_drill

    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    report = run_drill(
        name,
        target(ctx),
        env,
        parse_parameter_args(ctx.args),
        confirm=confirm,
        probe_rate=probe_rate,
        say=say,
    )
    if as_json:
        echo_json({k: v for k, v in report.__dict__.items() if k != "runs"})
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.verified:
        raise typer.Exit(ExitCode.ERROR)


@drill_app.command()
def export(
    name: Annotated[str, typer.Argument(help="The drill (`labkit drill list`).")],
    env: EnvOption = "staging",
) -> None:
    """Print drill NAME's Chaos Toolkit experiment (JSON): its steady-state hypothesis and method."""
    from labkit.ops.drill import experiment, get

    typer.echo(json.dumps(experiment(get(name), env), indent=2))
