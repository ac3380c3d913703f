"""`labkit release build`: the release artifact, built and (with --bucket) uploaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labkit.cli.context import open_target
from labkit.release.build import build_release, parse_faults, read_artifact_manifest, upload_release

release_app = typer.Typer(
    help="Build release artifacts (the app plus its release.json) and upload them.", no_args_is_help=True
)


@release_app.command("build")
def build(
    version: Annotated[str, typer.Argument(help="MAJOR.MINOR.PATCH[-suffix], e.g. 1.4.0 or 2.0.0-rc.1.")],
    fault: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE, repeatable: error_rate=0.3 latency_ms=200 ready=fail start_delay_s=5"),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="Upload to this bucket as releases/VERSION/release.tar.gz.")
    ] = None,
    target: Annotated[str, typer.Option(help="sandbox or aws: where --bucket lives.")] = "sandbox",
    out: Annotated[
        Path | None, typer.Option(help="Folder for release.tar.gz (default: .labkit/releases/VERSION).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an uploaded release of the same version.")] = False,
    allow_spend: Annotated[
        bool, typer.Option(help="Needed with --target aws: the upload creates an object there.")
    ] = False,
) -> None:
    """Build the release artifact for VERSION and, with --bucket, upload it."""
    faults = parse_faults(fault or [])  # checked before anything is built
    artifact = build_release(version, faults, out)
    typer.echo(f"built {artifact}")
    typer.echo(f"  {json.dumps(read_artifact_manifest(artifact))}")
    if bucket:
        uri = upload_release(
            open_target(target, allow_spend=allow_spend), bucket, artifact, version, overwrite=overwrite
        )
        typer.echo(f"uploaded {uri}")
