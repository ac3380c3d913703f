"""`labkit sandbox up | down | status | logs | reset | url`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from labkit import sandbox
from labkit.cli.context import AsJson, ExitCode, echo_json
from labkit.sandbox.client.paths import sandbox_paths

sandbox_app = typer.Typer(
    help="The offline sandbox: AWS's API (moto), real app processes and a real load balancer on loopback.",
    no_args_is_help=True,
)


@sandbox_app.command("up")
def up(
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Start empty; the saved AWS state is kept aside under a timestamp."),
    ] = False,
    restore: Annotated[
        Path | None,
        typer.Option(help="Start from this kept state file (e.g. aws-state.1.pickle, the previous save)."),
    ] = None,
) -> None:
    """Start the sandbox (its saved AWS state comes back) and print its endpoint."""
    typer.echo("starting the sandbox (moto, the load balancer, the instances' apps)...")
    # the one call every path that needs the sandbox makes
    endpoint = sandbox.ensure_up(reset_state=reset, restore=restore)
    typer.echo(f"sandbox running: AWS_ENDPOINT_URL={endpoint}")


@sandbox_app.command("down")
def down() -> None:
    """Save the AWS state and stop the sandbox and every app process (fails when the save does)."""
    typer.echo("stopping the sandbox (saving its AWS state, stopping the apps)...")
    typer.echo("stopped" if sandbox.down() else "the sandbox was not running")


@sandbox_app.command("status")
def status(as_json: AsJson = False) -> None:
    """Running or not, the endpoint, what it serves, its saves and the locks it restored. Exits 1 when
    it is not running."""
    current = sandbox.status()
    if as_json:
        echo_json(current)
        if not current.running:
            raise typer.Exit(ExitCode.ERROR)
        return
    typer.echo(current.summary())
    for line in current.save_lines() + current.lock_lines() + current.identity_lines():
        typer.echo(line)
    for instance in current.instances:
        port = instance.get("port") or "-"
        error = f"  ({instance['error']})" if instance.get("error") else ""
        typer.echo(
            f"  {instance['instance_id']}  {instance['color'] or '-':<6} {instance['version'] or '-':<10} "
            f"{instance['state']:<9} port {port}{error}"
        )
    if not current.running:
        raise typer.Exit(ExitCode.ERROR)


@sandbox_app.command("logs")
def logs(
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
) -> None:
    """The end of the service's log (moto, the load balancer, the instances)."""
    typer.echo(sandbox.log_tail(lines))
    if not follow:
        return
    path = sandbox_paths().log_file
    with path.open("rb") as log:
        log.seek(0, 2)
        try:
            while True:
                chunk = log.read()
                if chunk:
                    typer.echo(chunk.decode("utf-8", errors="replace"), nl=False)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@sandbox_app.command("reset")
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Wipe the sandbox's saved AWS state (every resource, Terraform state included)."""
    if not yes:
        typer.confirm(
            "This deletes every resource in the sandbox, Terraform state included. Continue?", abort=True
        )
    restarted = sandbox.reset()
    typer.echo("the sandbox is empty" + (" and running again" if restarted else ""))


@sandbox_app.command("url")
def url(
    dns_name: Annotated[str, typer.Argument(help="The ALB's DNS name, e.g. from `terraform output`.")],
    port: Annotated[int | None, typer.Option(help="The listener's port when the ALB has several.")] = None,
) -> None:
    """The loopback URL that serves an ALB's listener."""
    typer.echo(sandbox.alb_url(dns_name, port=port))
