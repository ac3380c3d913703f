"""`labkit stack`: plan, apply, destroy and read the Terraform environments on a target."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from labkit.cli.context import open_target
from labkit.errors import ConfigError
from labkit.infra.stack import ENVIRONMENTS, Stack

stack_app = typer.Typer(
    help="The Terraform environments (global, staging, production) on the sandbox or AWS.",
    no_args_is_help=True,
)

Env = Annotated[str, typer.Argument(help=f"One of: {', '.join(ENVIRONMENTS)}.")]
Vars = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="NAME=VALUE, repeatable (green_weight=10). Values are strings, which Terraform converts to "
        "the variable's type; a value starting with [ or { (or null) is read as JSON.",
    ),
]
TargetName = Annotated[str, typer.Option("--target", help="sandbox (default) or aws.")]
Region = Annotated[str | None, typer.Option(help="AWS region for --target aws (default: your profile's).")]
Profile = Annotated[str | None, typer.Option(help="AWS profile for --target aws.")]
Endpoint = Annotated[
    str | None,
    typer.Option(help="Sandbox only: a running AWS endpoint on loopback, instead of the labkit sandbox."),
]


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as Terraform variables; refuses a malformed pair before anything runs."""
    variables: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--var {pair!r} is not NAME=VALUE.", hint="Write it as --var green_weight=10.")
        # Scalars stay strings (Terraform converts "10" for a number variable, and "1.10" stays a
        # version); lists, maps and null are JSON.
        if value.startswith(("[", "{")) or value == "null":
            try:
                variables[name.strip()] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"--var {name}: {value!r} is not valid JSON ({exc.msg}).",
                    hint="Quote lists and maps for the shell: --var 'alarm_emails=[\"me@example.com\"]'.",
                ) from exc
        else:
            variables[name.strip()] = value
    return variables


def _stack(
    env: str,
    target: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    allow_spend: bool = False,
) -> Stack:
    chosen = open_target(
        target, region=region, profile=profile, allow_spend=allow_spend, endpoint_url=endpoint_url
    )
    return Stack(env, chosen)


@stack_app.command()
def plan(
    env: Env,
    var: Vars = None,
    target: TargetName = "sandbox",
    region: Region = None,
    profile: Profile = None,
    endpoint_url: Endpoint = None,
) -> None:
    """Show what applying ENV (with --var changes on top of its deployment) would change."""
    variables = parse_vars(var or [])
    result = _stack(env, target, region=region, profile=profile, endpoint_url=endpoint_url).plan(variables)
    for change in result.changes:
        typer.echo(f"  {change.action:<8} {change.address}")
    typer.echo(result.summary())


@stack_app.command()
def apply(
    env: Env,
    var: Vars = None,
    target: TargetName = "sandbox",
    region: Region = None,
    profile: Profile = None,
    endpoint_url: Endpoint = None,
    allow_spend: Annotated[
        bool, typer.Option(help="Needed with --target aws: the stack costs money while it exists.")
    ] = False,
) -> None:
    """Apply ENV; --var values go on top of the deployment it was last applied with."""
    variables = parse_vars(var or [])
    stack = _stack(
        env, target, region=region, profile=profile, endpoint_url=endpoint_url, allow_spend=allow_spend
    )
    result = stack.apply(variables)
    _print_outputs(result.outputs)


@stack_app.command()
def destroy(
    env: Env,
    target: TargetName = "sandbox",
    region: Region = None,
    profile: Profile = None,
    endpoint_url: Endpoint = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy every resource of ENV (global refuses: see teardown-global)."""
    stack = _stack(env, target, region=region, profile=profile, endpoint_url=endpoint_url)
    if not yes:
        typer.confirm(f"Destroy every resource of {env} on {stack.target.name}?", abort=True)
    result = stack.destroy()
    typer.echo(f"{env}: {result.removed} resources destroyed")


@stack_app.command()
def output(
    env: Env,
    target: TargetName = "sandbox",
    region: Region = None,
    profile: Profile = None,
    endpoint_url: Endpoint = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print every output of ENV (alb_dns_name among them for staging and production)."""
    values = _stack(env, target, region=region, profile=profile, endpoint_url=endpoint_url).outputs()
    if as_json:
        typer.echo(json.dumps(values, indent=2, sort_keys=True))
    else:
        _print_outputs(values)


@stack_app.command("teardown-global")
def teardown_global(
    confirm: Annotated[str, typer.Option(help="Type `global` to confirm: the state bucket goes too.")],
    target: TargetName = "sandbox",
    region: Region = None,
    profile: Profile = None,
    endpoint_url: Endpoint = None,
) -> None:
    """Remove global, state bucket included, once staging and production are destroyed."""
    _stack("global", target, region=region, profile=profile, endpoint_url=endpoint_url).teardown(
        confirm=confirm
    )


def _print_outputs(values: dict[str, Any]) -> None:
    if not values:
        typer.echo("(no outputs: the environment is not applied)")
    for name in sorted(values):
        value = values[name]
        typer.echo(f"{name} = {value if isinstance(value, str) else json.dumps(value, sort_keys=True)}")
