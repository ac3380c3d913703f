"""`labkit report [RUN_DIR] [--out DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labkit.lab.report import RunbookPage, build_site
from labkit.ops.execute import catalog
from labkit.settings import PROJECT_ROOT


def report(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A folder `labkit run` wrote (default: the newest under runs/).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the site (default: RUN_DIR/site).")] = None,
) -> None:
    """Build a run's static site: headline figures, architecture, lessons, ledger, drills, runbooks."""
    runbooks = [RunbookPage(r.name, r.fixes, r.path) for r in catalog(parameters=False)]
    index = build_site(run_dir, out, runbooks=runbooks, roadmap=PROJECT_ROOT / "ROADMAP.md")
    typer.echo(f"report: {index}")
