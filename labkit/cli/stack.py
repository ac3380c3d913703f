"""`labkit stack`: plan, apply, destroy and read the Terraform environments on a target."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from labkit.cli.context import AsJson, echo_json, target
from labkit.errors import ConfigError
from labkit.infra.stack import ENVIRONMENTS, Stack, is_app_environment, is_environment

stack_app = typer.Typer(
    help="The Terraform environments (global, staging, production) on the sandbox or AWS.",
    no_args_is_help=True,
)

#: The exit status of `labkit stack drift` when something drifted (as `terraform plan -detailed-exitcode`).
DRIFT_EXIT = 2
#: The exit status of `labkit stack compare` when two environments differ in a way no code declares.
COMPARE_EXIT = 2
#: How long `labkit stack apply` waits for the fleets to turn healthy by default.
WAIT_TIMEOUT_S = 300.0


def _check_env(value: str) -> str:
    """Refuse an unknown environment while parsing, before any target is built."""
    if not is_environment(value):
        raise typer.BadParameter(
            f"{value!r} is not an environment; use one of: {', '.join(ENVIRONMENTS)}, or dev-NAME "
            "(`labkit env list`)."
        )
    return value


Env = Annotated[
    str,
    typer.Argument(help=f"One of: {', '.join(ENVIRONMENTS)}, or dev-NAME.", callback=_check_env),
]
Vars = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="NAME=VALUE, repeatable (green_weight=10). Values are strings, which Terraform converts to "
        "the variable's type; a value starting with [ or { (or null) is read as JSON.",
    ),
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


def _stack(ctx: typer.Context, env: str, *, quiet_stdout: bool = False) -> Stack:
    """ENV on the root options' target; ``quiet_stdout`` sends Terraform's progress lines to stderr,
    so stdout holds only the JSON a script reads."""
    if quiet_stdout:
        return Stack(env, target(ctx), reporter=lambda line: typer.echo(line, err=True))
    return Stack(env, target(ctx))


@stack_app.command()
def plan(
    ctx: typer.Context,
    env: Env,
    var: Vars = None,
    out: Annotated[
        bool,
        typer.Option(
            "--out",
            help="Save the plan, to apply later with `apply --plan`: to runs/plans/ENV-COMMIT-TIME.tfplan "
            "(or --out-file). A .json sidecar beside it records the commit, state serial, checksum and "
            "variables it was made from.",
        ),
    ] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out-file", help="Save the plan to this file (implies --out).")
    ] = None,
) -> None:
    """Show what applying ENV (with --var changes on top of its deployment) would change."""
    variables = parse_vars(var or [])
    stack = _stack(ctx, env)
    if not out and out_file is None:
        result = stack.plan(variables)
        saved = None
    else:
        from labkit.infra.planfile import save_plan

        saved = save_plan(stack, variables, out=out_file)
        result = saved.plan
    for change in result.changes:
        typer.echo(f"  {change.action:<8} {change.address}")
    typer.echo(result.summary())
    if saved is not None:
        record = saved.record
        typer.echo(
            f"Saved plan: {saved.path} (commit {record.commit[:7]}, state serial {record.state_serial}); "
            f"apply it with `labkit stack apply {env} --plan {saved.path}`"
        )


@stack_app.command()
def apply(
    ctx: typer.Context,
    env: Env,
    var: Vars = None,
    wait: Annotated[
        bool,
        typer.Option(
            help="After the apply, wait until every fleet with capacity is healthy in its target group."
        ),
    ] = True,
    wait_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the fleets.", min=0)
    ] = WAIT_TIMEOUT_S,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Apply this saved plan (`plan --out`) and nothing else, only while its checksum, "
            "commit and state serial still match.",
        ),
    ] = None,
) -> None:
    """Apply ENV; --var values go on top of the deployment it was last applied with. On --target
    aws it needs --allow-spend. staging and production refuse a release that is not published
    (`labkit release build VERSION`), and the command returns once their fleets serve (--no-wait:
    at once)."""
    variables = parse_vars(var or [])
    if plan_file is not None and variables:
        raise ConfigError(
            "A saved plan fixes its variables: --var cannot change them.",
            hint=f"Make a new plan with those values (`labkit stack plan {env} --var ... --out`) and "
            "apply it, or apply without --plan.",
        )
    stack = _stack(ctx, env)
    _refuse_while_deploying(stack, "apply")
    if plan_file is not None:
        from labkit.infra.planfile import apply_saved_plan

        result = apply_saved_plan(stack, plan_file)
    else:
        result = stack.apply(variables)
    _print_outputs(result.outputs)
    if wait and is_app_environment(env):
        from labkit.deploy.health import wait_for_fleets  # the deploy layer's one copy of the wait

        # After the apply, which released the state lock: waiting holds nothing.
        wait_for_fleets(stack.target, result.outputs, timeout_s=wait_timeout, say=_progress_line())


def _refuse_while_deploying(stack: Stack, action: str) -> None:
    """A deployment in progress owns its environment: the controller applies under that lock."""
    if is_app_environment(stack.env):
        from labkit.deploy.ledger import refuse_while_deploying

        refuse_while_deploying(stack.target, stack.names.ledger_table, stack.env, action)


def _progress_line() -> Callable[[str], None]:
    """One progress line, rewritten in place on a terminal; plain lines otherwise (logs, pipes)."""
    if not sys.stdout.isatty():
        return lambda line: typer.echo(line) if line else None

    def say(line: str) -> None:
        sys.stdout.write("\r\033[K" + line.strip() + ("" if line else "\n"))
        sys.stdout.flush()

    return say


@stack_app.command()
def destroy(
    ctx: typer.Context,
    env: Env,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    confirm: Annotated[
        str | None,
        typer.Option(
            help="Type ENV's name to confirm: required on --target aws, and for production everywhere."
        ),
    ] = None,
) -> None:
    """Destroy every resource of ENV (global refuses: see teardown-global). On --target aws, and
    for production everywhere, it needs --confirm ENV; production also refuses while its load
    balancer's deletion protection is on."""
    stack = _stack(ctx, env)
    stack.confirm_destroy(confirm)  # refused before the question and before any change
    _refuse_while_deploying(stack, "destroy")
    stack.refuse_while_deletion_protected()
    if not yes:
        typer.confirm(f"Destroy every resource of {env} on {stack.target.name}?", abort=True)
    result = stack.destroy(confirm=confirm)
    typer.echo(f"{env}: {result.removed} resources destroyed")


@stack_app.command()
def output(ctx: typer.Context, env: Env, as_json: AsJson = False) -> None:
    """Print every output of ENV (alb_dns_name among them for staging and production)."""
    values = _stack(ctx, env, quiet_stdout=as_json).outputs()
    if as_json:
        echo_json(values)
    else:
        _print_outputs(values)


@stack_app.command()
def drift(ctx: typer.Context, env: Env, as_json: AsJson = False) -> None:
    """Show what differs between ENV's state (its code as last applied) and the cloud, resource by
    resource, attribute by attribute (a refresh-only plan: it changes nothing). Exit 0 when nothing
    drifted, 2 when something did, 1 on an error. `labkit runbook run reconcile-drift` reverts or
    adopts it."""
    from labkit.infra.drift import detect

    report = detect(_stack(ctx, env, quiet_stdout=True))
    if as_json:
        echo_json(report.to_json())
    else:
        for line in report.lines():
            typer.echo(line)
    if report.has_drift:
        raise typer.Exit(DRIFT_EXIT)


def _check_app_env(value: str) -> str:
    if not is_app_environment(value):
        raise typer.BadParameter(
            f"{value!r} is not an app environment; use staging, production or a developer environment "
            "(dev-NAME, `labkit env list`)."
        )
    return value


AppEnv = Annotated[
    str,
    typer.Argument(
        help="staging, production or a developer environment (dev-NAME).", callback=_check_app_env
    ),
]


@stack_app.command()
def compare(ctx: typer.Context, left: AppEnv, right: AppEnv, as_json: AsJson = False) -> None:
    """Show how two environments differ (LEFT RIGHT: staging production): the settings each passes to
    the composition module and those applied, the deployment, the composition version each runs,
    provider versions, and the resources one has and the other has not (from a plan of the code
    where there is no state). Exit 0 when every difference is declared in an environment's
    local.settings or follows from it, 2 when one is not, 1 on an error."""
    from labkit.infra.compare import compare as compare_environments

    if left == right:
        raise ConfigError(f"Comparing {left} with itself.", hint="Name two environments: staging production.")
    found = compare_environments(_stack(ctx, left, quiet_stdout=True), _stack(ctx, right, quiet_stdout=True))
    if as_json:
        echo_json(found.to_json())
    else:
        for line in found.lines():
            typer.echo(line)
    if found.has_unintended:
        raise typer.Exit(COMPARE_EXIT)


@stack_app.command("teardown-global")
def teardown_global(
    ctx: typer.Context,
    confirm: Annotated[str, typer.Option(help="Type `global` to confirm: the state bucket goes too.")],
    account_id: Annotated[
        str | None,
        typer.Option(help="On --target aws: the account's id, to confirm which one (required there)."),
    ] = None,
) -> None:
    """Remove global, state bucket included, once staging and production are destroyed."""
    _stack(ctx, "global").teardown(confirm=confirm, account_id=account_id)


def _print_outputs(values: dict[str, Any]) -> None:
    if not values:
        typer.echo("(no outputs: the environment is not applied)")
    for name in sorted(values):
        value = values[name]
        typer.echo(f"{name} = {value if isinstance(value, str) else json.dumps(value, sort_keys=True)}")
