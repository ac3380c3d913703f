"""`labkit db migrate|current|history ENV`: a release's schema migrations on an environment's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from labkit.cli.context import target
from labkit.cli.release import Bucket, artifact_bucket
from labkit.infra.stack import APP_ENVIRONMENTS, is_app_environment

if TYPE_CHECKING:
    from labkit.deploy.migrations import Action

db_app = typer.Typer(
    help="The environment's database: run a release's schema migrations (Alembic), show where it is.",
    no_args_is_help=True,
)


def _check_env(value: str) -> str:
    if not is_app_environment(value):
        raise typer.BadParameter(
            f"{value!r} has no database; use one of: {', '.join(APP_ENVIRONMENTS)}, or dev-NAME."
        )
    return value


Env = Annotated[str, typer.Argument(help="The environment whose database it is.", callback=_check_env)]
Release = Annotated[
    str | None,
    typer.Option(
        "--release",
        help="The published release whose migrations run (default: the one serving all the traffic).",
    ),
]


def _run(ctx: typer.Context, env: str, action: Action, release: str | None, bucket: str | None,
         revision: str | None = None) -> str:  # fmt: skip
    from labkit.deploy.migrations import environment_database, run_migrations, serving_release
    from labkit.infra.stack import Stack

    chosen = target(ctx)
    stack = Stack(env, chosen, reporter=None)
    outputs = stack.outputs()
    database = None if action == "history" else environment_database(stack, outputs)
    version = release or serving_release(outputs)
    return run_migrations(chosen, bucket or artifact_bucket(chosen), version, action, database, revision)


@db_app.command()
def migrate(
    ctx: typer.Context,
    env: Env,
    release: Release = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Upgrade to this revision instead of the release's own.")
    ] = None,
    bucket: Bucket = None,
) -> None:
    """Upgrade ENV's database to the release's schema revision (its release.json's), with the
    release's own migrations."""
    typer.echo(_run(ctx, env, "upgrade", release, bucket, to), nl=False)


@db_app.command()
def current(ctx: typer.Context, env: Env, release: Release = None, bucket: Bucket = None) -> None:
    """Print the revision ENV's database is at ("none" before its first migration)."""
    typer.echo(_run(ctx, env, "current", release, bucket), nl=False)


@db_app.command()
def history(ctx: typer.Context, env: Env, release: Release = None, bucket: Bucket = None) -> None:
    """List the release's revisions, oldest first (no database needed)."""
    typer.echo(_run(ctx, env, "history", release, bucket), nl=False)
