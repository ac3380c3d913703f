"""`labkit deploy ENV VERSION`, `labkit deploy status|resume|abort ENV` and `labkit rollback ENV`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..deploy import Controller
from ..errors import ConfigError, DeploymentLockedError
from ..ledger import Deployment
from ..probe import Probe, summarize
from ..strategy import STRATEGY_NAMES, from_name
from ..target import get_target
from .probe import format_summary

TargetOption = Annotated[str, typer.Option(help="sandbox or aws.")]
ProfileOption = Annotated[str | None, typer.Option(help="AWS profile for --target aws.")]
SpendOption = Annotated[
    bool, typer.Option(help="Allow changes that cost money on --target aws (a deploy launches instances).")
]
Env = Annotated[str, typer.Argument(help="The environment: staging or production.")]

#: Exit codes of the shared contract (labkit/cli defines them): a rollback, a lock held by another.
EXIT_ROLLED_BACK = 3
EXIT_LOCKED = 4


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


def _controller(env: str, target: str, profile: str | None, allow_spend: bool) -> Controller:
    return Controller(
        env, get_target(target, profile=profile, allow_spend=allow_spend), say=lambda line: typer.echo(line)
    )


def print_outcome(record: Deployment, probe: Probe | None) -> None:
    """Print how it ended (and the probe's summary); exit 0 only when the release serves all traffic."""
    if probe is not None:
        probe.stop()
        typer.echo(format_summary(summarize(probe.results())))
    if record.status == "succeeded":
        typer.echo(f"deployed: {record.version} serves all of {record.env}'s traffic on {record.to_color}")
        return
    typer.echo(f"{record.status.replace('_', ' ')}: {record.reason}", err=True)
    raise typer.Exit(EXIT_ROLLED_BACK)


@contextmanager
def _lock_exit() -> Iterator[None]:
    """A deployment lock held by someone else (or taken over from this controller) exits 4."""
    try:
        yield
    except DeploymentLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_LOCKED) from exc


def _probe(controller: Controller, rate: float | None) -> Probe | None:
    if not rate:
        return None
    url = controller.alb_url()
    typer.echo(f"probe: {rate:g} requests/s through {url} for the whole deployment")
    return Probe(url, rate=rate, allow_remote=not controller.target.is_sandbox).start()


@deploy_app.command()
def start(
    env: Env,
    version: Annotated[
        str, typer.Argument(help="The release to deploy (it must be in the artifact bucket).")
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
    target: TargetOption = "sandbox",
    profile: ProfileOption = None,
    allow_spend: SpendOption = False,
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
    chosen = from_name(strategy, **overrides)
    controller = _controller(env, target, profile, allow_spend)
    probe = _probe(controller, probe_rate)
    try:
        with _lock_exit():
            record = controller.deploy(
                version, strategy=chosen, capacity=capacity, preview_requests=preview, probe=probe
            )
    finally:
        if probe is not None:
            probe.stop()
    print_outcome(record, probe)


@deploy_app.command()
def status(env: Env, target: TargetOption = "sandbox", profile: ProfileOption = None) -> None:
    """What serves ENV's traffic, who holds its lock, and its latest deployment."""
    for line in _controller(env, target, profile, False).status().lines():
        typer.echo(line)


@deploy_app.command()
def resume(
    env: Env,
    force: Annotated[
        bool, typer.Option(help="Also take over from a hung controller on this host (heartbeat stopped).")
    ] = False,
    probe_rate: Annotated[float | None, typer.Option(help="Run the load probe meanwhile.")] = None,
    target: TargetOption = "sandbox",
    profile: ProfileOption = None,
    allow_spend: SpendOption = False,
) -> None:
    """Continue ENV's interrupted deployment from its ledger record (after its controller died)."""
    controller = _controller(env, target, profile, allow_spend)
    probe = _probe(controller, probe_rate)
    try:
        with _lock_exit():
            record = controller.resume(probe=probe, force=force)
    finally:
        if probe is not None:
            probe.stop()
    print_outcome(record, probe)


@deploy_app.command()
def abort(
    env: Env,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger.")] = None,
    force: Annotated[
        bool, typer.Option(help="Also take over from a hung controller on this host (heartbeat stopped).")
    ] = False,
    target: TargetOption = "sandbox",
    profile: ProfileOption = None,
    allow_spend: SpendOption = False,
) -> None:
    """Roll ENV's interrupted deployment back: all traffic to the old color, the lock released."""
    with _lock_exit():
        record = _controller(env, target, profile, allow_spend).abort(reason=reason, force=force)
    typer.echo(f"aborted: {record.reason}")


def rollback(
    env: Env,
    target: TargetOption = "sandbox",
    profile: ProfileOption = None,
    allow_spend: SpendOption = False,
) -> None:
    """Put all of ENV's traffic back on the color that served before the last deployment, at once."""
    with _lock_exit():
        record = _controller(env, target, profile, allow_spend).rollback()
    if record is not None:
        typer.echo(f"rolled back: {record.reason}")
