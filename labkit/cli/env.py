"""`labkit env`: developer and feature-branch environments, each built and destroyed in one command.

A separate group rather than `labkit stack apply dev-NAME` creating one on first use: a typo in
`stack apply` should fail, not build a VPC, and `env destroy` removes more than `stack destroy` does
(the state object, the claims, the generated root). Once created, `labkit stack ...`, `labkit deploy
...` and the runbooks take its dev-NAME like any environment.
"""

from __future__ import annotations

from typing import Annotated

import typer

from labkit.cli.context import AsJson, echo_json, target

env_app = typer.Typer(
    help="Developer and feature-branch environments: the staging composition, named so nothing collides.",
    no_args_is_help=True,
)

Name = Annotated[
    str,
    typer.Argument(help="Your branch or your name (feature/login, alice); or the environment's dev-NAME."),
]


@env_app.command()
def create(
    ctx: typer.Context,
    name: Name,
    version: Annotated[
        str | None, typer.Option(help="Release blue runs (default: the newest in the artifact bucket).")
    ] = None,
    capacity: Annotated[int, typer.Option(min=1, help="Instances of blue, which takes all traffic.")] = 1,
    vpc_cidr: Annotated[
        str | None, typer.Option(help="VPC range (default: a free /16 of 10.100-10.199.0.0/16).")
    ] = None,
) -> None:
    """Create the environment NAME derives (or bring it up to date), sharing global; print the names
    it derived."""
    from labkit.infra.devenv import create as create_env

    created = create_env(
        target(ctx), name, version=version, capacity=capacity, vpc_cidr=vpc_cidr,
        say=lambda line: typer.echo(line, err=True),
    )  # fmt: skip
    for line in created.lines():
        typer.echo(line)


@env_app.command()
def destroy(
    ctx: typer.Context,
    name: Name,
    confirm: Annotated[
        str | None, typer.Option(help="The environment's name: needed on AWS, and for another owner's.")
    ] = None,
) -> None:
    """Destroy the environment NAME derives: its resources, its state object, its claims, its root."""
    from labkit.infra.devenv import destroy as destroy_env

    destroy_env(target(ctx), name, confirm=confirm, say=lambda line: typer.echo(line, err=True))


@env_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every developer environment on the target: owner, VPC range, resources in its state."""
    from labkit.infra.devenv import listing

    rows = listing(target(ctx))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no developer environments (`labkit env create NAME` makes one)")
    for row in rows:
        typer.echo(
            f"{row['environment']:<21} {row['vpc_cidr']:<15} {row['resources']:>3} resources  "
            f"{row['owner']}  (from {row['name']!r}, {row['created']})"
        )
