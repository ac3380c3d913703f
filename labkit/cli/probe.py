"""`labkit probe URL [--write]`: a fixed-rate load probe that prints a summary of what it saw."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labkit.errors import ProbeError

if TYPE_CHECKING:
    import pandas as pd

#: How often a running probe prints a progress line.
PROGRESS_EVERY_S = 5.0


def probe(
    url: Annotated[
        str,
        typer.Argument(
            help="What to GET, e.g. the sandbox ALB's loopback URL (with --write: the app whose /orders "
            "to POST to)."
        ),
    ],
    rate: Annotated[
        float | None, typer.Option(help="Requests per second (open loop); default 100, with --write 20.")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 10.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds a request may take before it counts as failed.")
    ] = 2.0,
    header: Annotated[
        list[str] | None,
        typer.Option(help="NAME:VALUE sent with every request, repeatable (a preview header)."),
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Also write every request to this CSV file.")] = None,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a URL that is not on loopback (a load balancer on AWS).")
    ] = False,
    write: Annotated[
        bool,
        typer.Option(
            help="POST orders to URL's /orders instead, then read every acknowledged one back and count "
            "the lost writes."
        ),
    ] = False,
) -> None:
    """Send GET URL at --rate for --duration and print failures and latency per phase.

    With --write: POST /orders under URL instead (the app with a database), keep the id of every
    acknowledged write, and afterwards read each one back; a write is lost when it is gone.

    Exits 1 when any request failed or any acknowledged write is lost, so a script can tell.
    """
    from labkit.deploy.probe import Probe, summarize  # pandas: only when the command runs
    from labkit.deploy.writeprobe import DEFAULT_WRITE_RATE, WriteProbe

    headers = dict(_header(h) for h in header or [])
    kind = WriteProbe if write else Probe
    rate = rate if rate is not None else (DEFAULT_WRITE_RATE if write else 100.0)
    runner = kind(
        url, rate=rate, duration=duration, timeout=timeout, headers=headers, allow_remote=allow_remote
    )
    typer.echo(f"probing {runner.url} at {rate:g}/s for {duration:g} s ({runner.workers} connections)")
    runner.start()
    try:
        while not runner.wait(timeout=PROGRESS_EVERY_S):
            sent, failed = runner.counts()
            typer.echo(f"  {runner.elapsed():5.0f} s  {sent} requests, {failed} failed")
    except KeyboardInterrupt:
        typer.echo("  interrupted: stopping")
    finally:
        runner.stop()
    frame = runner.results()
    if csv is not None:
        frame.to_csv(csv, index=False)
        typer.echo(f"wrote {len(frame)} requests to {csv}")
    typer.echo(format_summary(summarize(frame)))
    errors = frame["error"].dropna().value_counts()
    for error, count in errors.items():
        typer.echo(f"  {count:6d} x {error}")
    intact = True
    if isinstance(runner, WriteProbe):
        check = runner.verify()
        typer.echo(check.summary())
        if check.lost:
            shown = ", ".join(str(i) for i in check.lost[:20])
            typer.echo(f"  lost ids: {shown}{' ...' if len(check.lost) > 20 else ''}")
        intact = check.ok
    if len(errors) or not intact:
        raise typer.Exit(1)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as an aligned text table (shares in percent, latencies in ms)."""
    import pandas as pd

    table = pd.DataFrame(index=summary.index)
    table["requests"] = summary["requests"].astype(int)
    table["failed"] = summary["failed"].astype(int)
    table["fail %"] = (summary["failure_rate"] * 100).round(2)
    table["rps"] = summary["rate_rps"].round(1)
    for column in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        table[column] = summary[column].round(1)
    for column in summary.columns:
        if column.startswith(("color=", "version=")):
            table[column + " %"] = (summary[column] * 100).round(1)
    return table.to_string()


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ProbeError(
            f"--header {text!r} is not NAME:VALUE.", hint="For example --header 'X-Preview: green'."
        )
    return name.strip(), value.strip()
