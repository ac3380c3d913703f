"""`labkit deploy ENV VERSION`, `labkit deploy status|resume|abort ENV` and `labkit rollback ENV`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from labkit.cli.context import AsJson, ExitCode, echo_json, target
from labkit.deploy.strategy import STRATEGY_NAMES, from_name
from labkit.errors import ConfigError, ReleaseError
from labkit.infra.stack import APP_ENVIRONMENTS, is_app_environment
from labkit.release.build import check_version

if TYPE_CHECKING:  # the controller, the ledger and the probe load pandas: only a command imports them
    from labkit.deploy.controller import Controller
    from labkit.deploy.ledger import Deployment
    from labkit.deploy.probe import Probe


def _check_env(value: str) -> str:
    """Refuse an unknown environment while parsing, before any target is built."""
    if not is_app_environment(value):
        raise typer.BadParameter(
            f"{value!r} takes no deployments; use one of: {', '.join(APP_ENVIRONMENTS)}, or dev-NAME."
        )
    return value


def _check_version(value: str) -> str:
    try:
        return check_version(value)
    except ReleaseError as exc:
        raise typer.BadParameter(exc.message) from None


Env = Annotated[
    str, typer.Argument(help="staging, production or a developer's dev-NAME.", callback=_check_env)
]


class _DeployGroup(TyperGroup):
    """`labkit deploy ENV VERSION` runs the `start` subcommand; `status`, `resume`, `abort` are named."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own vendored click Context
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


deploy_app = typer.Typer(
    cls=_DeployGroup,
    no_args_is_help=True,
    help="Deploy a release blue/green: `labkit deploy ENV VERSION`, or status | resume | abort ENV.",
)


def _controller(ctx: typer.Context, env: str, *, quiet_stdout: bool = False) -> Controller:
    """ENV's controller; ``quiet_stdout`` sends its progress lines to stderr (stdout holds JSON)."""
    from labkit.deploy.controller import Controller

    return Controller(env, target(ctx), say=lambda line: typer.echo(line, err=quiet_stdout))


def print_outcome(record: Deployment, probe: Probe | None) -> None:
    """Print how it ended (and the probe's summary); exit 0 only when the release serves all traffic,
    3 when it was rolled back, 1 otherwise."""
    if probe is not None:
        from labkit.cli.probe import format_summary
        from labkit.deploy.probe import summarize

        probe.stop()
        typer.echo(format_summary(summarize(probe.results())))
    if record.status == "succeeded":
        typer.echo(f"deployed: {record.version} serves all of {record.env}'s traffic on {record.to_color}")
        return
    typer.echo(f"{record.status.replace('_', ' ')}: {record.reason}", err=True)
    raise typer.Exit(ExitCode.ROLLED_BACK if record.status in ("rolled_back", "aborted") else ExitCode.ERROR)


def _probe(controller: Controller, rate: float | None) -> Probe | None:
    if not rate:
        return None
    from labkit.deploy.probe import Probe

    url = controller.alb_url()
    typer.echo(f"probe: {rate:g} requests/s through {url} for the whole deployment")
    return Probe(url, rate=rate, allow_remote=not controller.target.is_sandbox).start()


@deploy_app.command()
def start(
    ctx: typer.Context,
    env: Env,
    version: Annotated[
        str,
        typer.Argument(
            help="The release to deploy (it must be in the artifact bucket).", callback=_check_version
        ),
    ],
    strategy: Annotated[str, typer.Option(help=f"One of: {', '.join(STRATEGY_NAMES)}.")] = "canary",
    weights: Annotated[
        str | None, typer.Option(help="Canary weights, comma-separated, e.g. 10,50,100.")
    ] = None,
    step: Annotated[int | None, typer.Option(help="Linear: percent more per step, e.g. 25.")] = None,
    bake: Annotated[float | None, typer.Option(help="Seconds each step bakes before the gate.")] = None,
    health_timeout: Annotated[
        float | None, typer.Option(help="Seconds for the new instances to turn healthy.")
    ] = None,
    scale_down_delay: Annotated[
        float | None, typer.Option(help="Seconds the old color keeps running after success.")
    ] = None,
    capacity: Annotated[
        int | None, typer.Option(help="Instances of the new color (default: as many as serve now).")
    ] = None,
    preview: Annotated[
        int, typer.Option(help="Send this many requests with the preview header before any weight moves.")
    ] = 0,
    probe_rate: Annotated[
        float | None, typer.Option(help="Run the load probe at this rate through the ALB meanwhile.")
    ] = None,
    check_rate: Annotated[
        float | None,
        typer.Option(help="The controller's own check traffic to the new color, requests/s (0: none)."),
    ] = None,
    on_inconclusive: Annotated[
        str | None,
        typer.Option(help="When a step has too little evidence: rollback (default), pause or promote."),
    ] = None,
) -> None:
    """Deploy VERSION to ENV's idle color and shift traffic by the strategy, gated and rolled back on
    failure. Exits 0 only when VERSION ends up serving all traffic."""
    overrides: dict[str, Any] = {}
    if weights is not None:
        try:
            overrides["weights"] = [int(w) for w in weights.split(",")]
        except ValueError:
            raise ConfigError(
                f"--weights {weights!r} is not a comma-separated list of whole numbers.",
                hint="For example --weights 10,50,100.",
            ) from None
    if step is not None:
        overrides["step_percent"] = step
    if bake is not None:
        overrides["interval_s" if strategy == "linear" else "bake_s"] = bake
    if health_timeout is not None:
        overrides["health_timeout_s"] = health_timeout
    if scale_down_delay is not None:
        overrides["scale_down_delay_s"] = scale_down_delay
    if check_rate is not None:
        overrides["check_rate"] = check_rate
    if on_inconclusive is not None:
        overrides["on_inconclusive"] = on_inconclusive
    chosen = from_name(strategy, **overrides)
    controller = _controller(ctx, env)
    probe = _probe(controller, probe_rate)
    try:
        # A lock held by another, or taken over from this controller, exits 4 (labkit.cli.main).
        record = controller.deploy(
            version, strategy=chosen, capacity=capacity, preview_requests=preview, probe=probe
        )
    finally:
        if probe is not None:
            probe.stop()
    print_outcome(record, probe)


@deploy_app.command()
def status(ctx: typer.Context, env: Env, as_json: AsJson = False) -> None:
    """What serves ENV's traffic, who holds its lock, and its latest deployment."""
    current = _controller(ctx, env, quiet_stdout=as_json).status()
    if as_json:
        echo_json(current)
        return
    for line in current.lines():
        typer.echo(line)


@deploy_app.command()
def resume(
    ctx: typer.Context,
    env: Env,
    force: Annotated[
        bool, typer.Option(help="Also take over from a hung controller on this host (heartbeat stopped).")
    ] = False,
    probe_rate: Annotated[float | None, typer.Option(help="Run the load probe meanwhile.")] = None,
) -> None:
    """Continue ENV's interrupted deployment from its ledger record (after its controller died)."""
    controller = _controller(ctx, env)
    probe = _probe(controller, probe_rate)
    try:
        record = controller.resume(probe=probe, force=force)
    finally:
        if probe is not None:
            probe.stop()
    print_outcome(record, probe)


@deploy_app.command()
def abort(
    ctx: typer.Context,
    env: Env,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger.")] = None,
    force: Annotated[
        bool, typer.Option(help="Also take over from a hung controller on this host (heartbeat stopped).")
    ] = False,
) -> None:
    """Roll ENV's interrupted deployment back: all traffic to the old color, the lock released."""
    record = _controller(ctx, env).abort(reason=reason, force=force)
    typer.echo(f"aborted: {record.reason}")


def rollback(ctx: typer.Context, env: Env) -> None:
    """Put all of ENV's traffic back on the color that served before the last deployment, at once."""
    record = _controller(ctx, env).rollback()
    if record is not None:
        typer.echo(f"rolled back: {record.reason}")
