"""`labkit release build | list`: release artifacts, built and published to the artifact bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labkit.cli.context import AsJson, echo_json, target, where
from labkit.errors import ReleaseError
from labkit.release.build import (
    build_release,
    list_releases,
    parse_faults,
    read_artifact_manifest,
    upload_release,
)

if TYPE_CHECKING:
    from labkit.target import Target

release_app = typer.Typer(
    help="Release artifacts (the app plus its release.json): build and publish them, list what is published.",
    no_args_is_help=True,
)

Bucket = Annotated[
    str | None,
    typer.Option(help="The artifact bucket (default: global's `artifact_bucket` output on the target)."),
]


def artifact_bucket(chosen: Target) -> str:
    """The artifact bucket as global's outputs name it on ``chosen``."""
    from labkit.infra.stack import Stack

    bucket = Stack("global", chosen, reporter=None).outputs().get("artifact_bucket")
    if not bucket:
        raise ReleaseError(
            f"global is not applied on {chosen.name}, so there is no artifact bucket to publish to.",
            hint=(
                "Apply it first: `labkit stack apply global`"
                if chosen.is_sandbox
                else "Apply it first: `labkit --target aws --allow-spend stack apply global`"
            )
            + "; or build only: `labkit release build VERSION --no-upload`.",
        )
    return str(bucket)


@release_app.command("build")
def build(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="MAJOR.MINOR.PATCH[-suffix], e.g. 1.4.0 or 2.0.0-rc.1.")],
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE, repeatable: error_rate=0.3 latency_ms=200 ready=fail start_delay_s=5 "
            "migration=one_step (with --schema 0002)"
        ),
    ] = None,
    upload: Annotated[
        bool, typer.Option(help="Publish to the artifact bucket as releases/VERSION/release.tar.gz.")
    ] = True,
    bucket: Bucket = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for release.tar.gz (default: .labkit/releases/VERSION).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a published release of the same version.")] = False,
    schema: Annotated[
        str | None,
        typer.Option(help="The database schema revision the release runs on: 0001 (default), 0002, 0003."),
    ] = None,
) -> None:
    """Build the release artifact for VERSION and publish it to the artifact bucket (--no-upload:
    build only). On --target aws publishing needs --allow-spend."""
    faults = parse_faults(fault or [])  # checked before anything is built
    if upload and not where(ctx).is_sandbox and not where(ctx).allow_spend:
        target(ctx).require_spend("upload a release artifact")  # refused before the build
    artifact = build_release(version, faults, out, schema=schema)
    typer.echo(f"built {artifact}")
    typer.echo(f"  {json.dumps(read_artifact_manifest(artifact))}")
    if not upload:
        return
    chosen = target(ctx)
    uri = upload_release(chosen, bucket or artifact_bucket(chosen), artifact, version, overwrite=overwrite)
    typer.echo(f"uploaded {uri}")


@release_app.command("list")
def list_(ctx: typer.Context, bucket: Bucket = None, as_json: AsJson = False) -> None:
    """The versions published in the artifact bucket."""
    chosen = target(ctx)
    name = bucket or artifact_bucket(chosen)
    versions = list_releases(chosen, name)
    if as_json:
        echo_json({"bucket": name, "versions": versions})
        return
    typer.echo(f"s3://{name}/releases/: {len(versions)} release(s)")
    for found in versions:
        typer.echo(f"  {found}")
