"""`labkit run PATH [-p NAME VALUE ...] [--timeout S] [--out DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labkit.errors import ConfigError, NotebookRunError
from labkit.lab.run import DEFAULT_CELL_TIMEOUT_S, parse_value, run_notebooks

#: Typer has no option taking two values many times, so `-p NAME VALUE` pairs arrive as extra args.
RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def parse_parameter_args(args: list[str]) -> dict[str, Any]:
    """``["-p", "name", "value", ...]`` -> ``{"name": parsed value}``; anything else is an error."""
    parameters: dict[str, Any] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-p", "--parameter"):
            raise ConfigError(
                f"Unexpected argument {flag!r}.",
                hint="Give parameters as -p NAME VALUE pairs, e.g. -p environment staging.",
            )
        if len(rest) < 2 or rest[0].startswith("-"):
            raise ConfigError(f"{flag} needs a NAME and a VALUE.", hint="For example: -p target sandbox")
        name, value = rest.pop(0), rest.pop(0)
        if not name.isidentifier():
            raise ConfigError(
                f"Parameter name {name!r} is not a Python identifier.", hint="For example: -p dry_run true"
            )
        parameters[name] = parse_value(value)
    return parameters


def run(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="A notebook, or a folder whose notebooks run in the learning path's order.")
    ],
    timeout: Annotated[
        float, typer.Option(help="Seconds each cell may run (0: no limit).")
    ] = DEFAULT_CELL_TIMEOUT_S,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the executed copies (default: runs/<timestamp>/ at the project root)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Do not stream the cells' output.")] = False,
) -> None:
    """Execute notebooks headless with papermill; -p NAME VALUE (repeatable) sets a parameter.

    VALUE is parsed as JSON when it parses (3, true, "text", [1, 2]), True/False/None as papermill does,
    else taken as a string. Exits 1 naming the notebook and cell that failed.
    """
    parameters = parse_parameter_args(ctx.args)
    try:
        report = run_notebooks(
            path, parameters, timeout=timeout or None, out_dir=out, stream_output=not quiet,
            reporter=typer.echo,
        )
    except NotebookRunError as exc:
        if exc.report is not None:
            failed = exc.report.failed
            if failed is not None and failed.failure is not None and failed.failure.traceback:
                typer.echo(failed.failure.traceback)
            typer.echo(exc.report.summary())
        raise
    typer.echo(report.summary())
