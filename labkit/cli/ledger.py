"""`labkit ledger [ENV]`: the deployment history, one deployment's events, and the lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from labkit.cli.context import AsJson, echo_json, target
from labkit.infra.stack import APP_ENVIRONMENTS, is_app_environment

if TYPE_CHECKING:
    from labkit.deploy.ledger import Deployment, Ledger
from labkit.deploy.ledger import default_owner
from labkit.deploy.stale import break_lock

#: The table the Terraform ``global`` environment creates (its ``ledger_table`` output).
DEFAULT_TABLE = "bglab-deployments"


def _check_env(value: str | None) -> str | None:
    if value is not None and not is_app_environment(value):
        raise typer.BadParameter(f"{value!r} has no deployments; use one of: {', '.join(APP_ENVIRONMENTS)}.")
    return value


def ledger(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Argument(help="Only this environment (staging, production).", callback=_check_env),
    ] = None,
    show: Annotated[str | None, typer.Option(help="Print this deployment and its timed events.")] = None,
    force_unlock: Annotated[
        bool,
        typer.Option(
            help="Remove ENV's deployment lock once its holder is proven gone (dead pid or stale heartbeat)."
        ),
    ] = False,
    runbooks: Annotated[
        bool,
        typer.Option(
            "--runbooks",
            help="List runbook runs (the audit records) instead; with --show RUN_ID, one run's steps.",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many deployments, newest first.")] = 20,
    table: Annotated[str, typer.Option(help="The ledger's DynamoDB table.")] = DEFAULT_TABLE,
    as_json: AsJson = False,
) -> None:
    """List deployments (newest first) with their status and reason; show one; or clear a lock."""
    if force_unlock and env is None:
        raise typer.BadParameter(
            "--force-unlock needs the environment, e.g. `labkit ledger staging --force-unlock`"
        )
    from labkit.deploy.ledger import Ledger  # pandas: only when the command runs

    if runbooks:
        _runbooks(ctx, env, show, limit, table, as_json)
        return
    book = Ledger(target(ctx), table)
    if force_unlock:
        assert env is not None  # checked above, before the target was built
        released = break_lock(book, env, f"labkit ledger --force-unlock ({default_owner()})")
        typer.echo(f"released {env}'s lock, held by {released}" if released else f"{env} was not locked")
        return
    if show is not None:
        if as_json:
            echo_json({"deployment": book.get(show), "events": book.events(show)})
        else:
            _show(book, book.get(show))
        return
    deployments = book.list(env)
    if as_json:
        echo_json(
            {
                "lock": book.lock_holder(env) if env is not None else None,
                "deployments": deployments[:limit],
            }
        )
        return
    if env is not None:
        holder = book.lock_holder(env)
        typer.echo(f"lock: {holder.describe() if holder else 'free'}")
    if not deployments:
        typer.echo("no deployments recorded" + (f" for {env}" if env else ""))
        return
    typer.echo(
        f"{'id':<24} {'env':<11} {'version':<12} {'colors':<14} {'strategy':<12} {'status':<12} result"
    )
    for d in deployments[:limit]:
        result = d.reason or f"{d.phase}, {d.to_color} at {d.weight}%"
        typer.echo(
            f"{d.id:<24} {d.env:<11} {d.version:<12} {d.from_color + '->' + d.to_color:<14} "
            f"{d.strategy.name:<12} {d.status:<12} {result}"
        )
    if len(deployments) > limit:
        typer.echo(f"... {len(deployments) - limit} older; --limit shows more")


def _show(book: Ledger, d: Deployment) -> None:
    duration = (
        f"{d.duration_s:.1f} s" if d.duration_s is not None else "still running (or its controller died)"
    )
    typer.echo(
        f"deployment {d.id}: {d.env} {d.from_version or '?'} ({d.from_color}) -> {d.version} ({d.to_color})"
    )
    typer.echo(f"  strategy  {d.strategy.describe()}")
    typer.echo(f"  status    {d.status}, phase {d.phase}, step {d.step_index + 1}/{len(d.strategy.steps)}, "
               f"{d.to_color} at {d.weight}%")  # fmt: skip
    typer.echo(f"  reason    {d.reason or '-'}")
    typer.echo(f"  by        {d.who}, started {d.started_at:%Y-%m-%d %H:%M:%S} UTC, {duration}")
    for e in book.events(d.id):
        took = f"{e.duration_s:7.2f} s" if e.duration_s is not None else "  running"
        when = e.started_at.strftime("%H:%M:%S.%f")[:-3]
        typer.echo(f"  {when}  {took}  {e.outcome:<7} {e.phase:<18} {e.detail or ''}")


def _runbooks(
    ctx: typer.Context, env: str | None, show: str | None, limit: int, table: str, as_json: bool
) -> None:
    """The runbook runs' audit records (labkit.ops.audit), newest first, or one run's steps."""
    from labkit.ops.audit import AuditLog

    log = AuditLog(target(ctx), table)
    if show is not None:
        record = log.get(show)
        if as_json:
            echo_json(record.to_json())
            return
        typer.echo(
            f"run {record.run_id}: {record.runbook} on {record.environment} ({record.target} {record.region})"
        )
        typer.echo(
            f"  by        {record.who}, started {record.started_at}, finished {record.finished_at or '-'}"
        )
        typer.echo(f"  outcome   {record.outcome}: {record.summary}")
        typer.echo(f"  params    {record.parameters}")
        typer.echo(f"  executed  {record.executed_copy or '(not run through `labkit runbook run`)'}")
        for step in record.steps:
            typer.echo(
                f"  {step.section:<8} {step.outcome:<7} {step.duration_s:7.2f} s  {step.name}  {step.detail}"
            )
        return
    records = log.list(env, limit=limit)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    if not records:
        typer.echo("no runbook runs recorded" + (f" for {env}" if env else ""))
        return
    typer.echo(f"{'run id':<48} {'env':<11} {'mode':<8} {'outcome':<14} who")
    for r in records:
        mode = "dry run" if r.dry_run else "act"
        typer.echo(f"{r.run_id:<48} {r.environment:<11} {mode:<8} {r.outcome:<14} {r.who}")
