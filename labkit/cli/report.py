"""`labkit report [RUN_DIR] [--out DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labkit.lab.report import render_report


def report(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A folder `labkit run` wrote (default: the newest under runs/).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the site (default: RUN_DIR/site).")] = None,
) -> None:
    """Render a run's executed notebooks and figures to a static site (index.html + one page each)."""
    index = render_report(run_dir, out)
    typer.echo(f"report: {index}")
