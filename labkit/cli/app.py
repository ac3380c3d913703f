"""`labkit app smoke`: build a release, run it under gunicorn on loopback, check every endpoint."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from labkit.release.appserver import AppProcess, unpack_release
from labkit.release.build import build_release

app_cli = typer.Typer(help="Run the release app locally.", no_args_is_help=True)

SMOKE_VERSION = "0.0.0-smoke"
SMOKE_COLOR = "blue"
SMOKE_INSTANCE = "i-smoke"

#: (path, expected status, what the JSON body must show) for each endpoint.
_CHECKS: list[tuple[str, int, Callable[[Any], bool]]] = [
    ("/", 200, lambda b: b["color"] == SMOKE_COLOR and b["version"] == SMOKE_VERSION),
    ("/health/live", 200, lambda b: b["status"] == "live"),
    ("/health/ready", 200, lambda b: b["status"] == "ready"),
    ("/version", 200, lambda b: b["version"] == SMOKE_VERSION and bool(b["git_commit"])),
    ("/work?ms=5", 200, lambda b: b["ms"] == 5),
]


def _check(proc: AppProcess, path: str, status: int, body_ok: Callable[[Any], bool]) -> bool:
    try:
        got, raw = proc.get(path)
        body = json.loads(raw)
        ok = got == status and body_ok(body)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        typer.echo(f"  FAIL GET {path}: {exc}")
        return False
    typer.echo(f"  {'ok  ' if ok else 'FAIL'} GET {path} -> {got} {json.dumps(body)}")
    return ok


@app_cli.command("smoke")
def smoke() -> None:
    """Build a release into a temp folder, serve it on a free loopback port, GET each endpoint."""
    with tempfile.TemporaryDirectory(prefix="labkit-smoke-") as tmp:
        work = Path(tmp)
        artifact = build_release(SMOKE_VERSION, None, work)
        typer.echo(f"built {artifact}")
        release_dir = unpack_release(artifact, work / "release")
        typer.echo("starting the app under gunicorn on 127.0.0.1 ...")
        proc = AppProcess.start(
            release_dir,
            color=SMOKE_COLOR,
            instance_id=SMOKE_INSTANCE,
            log_path=work / "app.log",
            drain_s=0.5,  # nothing routes to it, so a short drain keeps `make lab` quick
            graceful_timeout_s=10,
        )
        typer.echo(f"serving at {proc.url} (pid {proc.pid})")
        try:
            results = [_check(proc, path, status, body_ok) for path, status, body_ok in _CHECKS]
        finally:
            started = time.monotonic()
            code = proc.stop()
        stopped_ok = code == 0
        typer.echo(
            f"  {'ok  ' if stopped_ok else 'FAIL'} SIGTERM -> exit code {code} "
            f"after {time.monotonic() - started:.1f} s"
        )
        if not (all(results) and stopped_ok):
            typer.echo(f"smoke test FAILED; end of the app log:\n{proc.log_tail()}", err=True)
            raise typer.Exit(1)
    typer.echo("smoke test passed")
