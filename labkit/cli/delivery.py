"""`labkit github ...` and `labkit notify ...`: what the GitHub Actions workflows (.github/workflows/)
do besides running labkit's own commands.

- ``labkit github deployment create ENV --ref SHA`` prints ``id=N`` (for ``$GITHUB_OUTPUT``);
  ``labkit github deployment status ID STATE`` sets its state (GitHub's Deployments API).
- ``labkit github drift-issue REPORT`` opens or updates the issue for a ``labkit stack drift --json``
  report that found drift.
- ``labkit github plan-run --commit SHA`` finds the pull-request run whose plans belong to a merged
  commit; ``labkit github plan-summary PLAN`` writes a saved plan as Markdown (the job summary).
- ``labkit notify deploy ENV VERSION --outcome STATUS`` posts the deploy's outcome and the ledger's
  timings to a Slack-compatible webhook.

The GitHub commands read GITHUB_REPOSITORY, GITHUB_TOKEN and GITHUB_API_URL (the runner sets the
first and the last; the job passes its token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from botocore.exceptions import BotoCoreError, ClientError

from labkit.cli.context import target
from labkit.delivery.github import DEPLOYMENT_STATES, DeploymentState, GitHub
from labkit.errors import ConfigError, LabkitError

github_app = typer.Typer(
    help="GitHub's REST API from a workflow: deployments, the drift issue, the plans of a merged commit.",
    no_args_is_help=True,
)
deployment_app = typer.Typer(
    help="GitHub's Deployments API: create a deployment, set its status.", no_args_is_help=True
)
github_app.add_typer(deployment_app, name="deployment")
notify_app = typer.Typer(help="Notifications to a Slack-compatible incoming webhook.", no_args_is_help=True)

RunUrl = Annotated[
    str,
    typer.Option(envvar="LABKIT_RUN_URL", help="The workflow run's page (the link people follow)."),
]


@deployment_app.command("create")
def create_deployment(
    env: Annotated[str, typer.Argument(help="The GitHub environment, e.g. staging or production.")],
    ref: Annotated[str, typer.Option(help="The commit (or branch, tag) being deployed.")],
    description: Annotated[str, typer.Option(help="What is deployed, for GitHub's list.")] = "",
) -> None:
    """Create a deployment of REF to ENV; prints ``id=N`` for ``>> "$GITHUB_OUTPUT"``."""
    about = description or f"{ref} to {env}"
    deployment_id = GitHub.from_env().create_deployment(ref, env, description=about)
    typer.echo(f"id={deployment_id}")


def _check_state(value: str) -> str:
    if value not in DEPLOYMENT_STATES:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(DEPLOYMENT_STATES)}.")
    return value


@deployment_app.command("status")
def deployment_status(
    deployment_id: Annotated[int, typer.Argument(help="The id `deployment create` printed.")],
    state: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(DEPLOYMENT_STATES)}.", callback=_check_state)
    ],
    log_url: RunUrl,
    environment_url: Annotated[str | None, typer.Option(help="Where the environment serves.")] = None,
    description: Annotated[str | None, typer.Option(help="A line on the status (140 characters).")] = None,
) -> None:
    """Set deployment ID's STATE, linking the run's log."""
    chosen = cast(DeploymentState, state)  # checked by _check_state
    GitHub.from_env().create_deployment_status(
        deployment_id, chosen, log_url=log_url, environment_url=environment_url, description=description
    )
    typer.echo(f"deployment {deployment_id}: {state}")


@github_app.command("drift-issue")
def drift_issue(
    report: Annotated[Path, typer.Argument(help="The JSON `labkit stack drift ENV --json` printed.")],
    run_url: RunUrl,
) -> None:
    """Open the drift issue of REPORT's environment, or update the open one; nothing when REPORT found
    no drift. A REPORT that is not a drift report (the check itself failed) exits 1."""
    from labkit.delivery.summaries import drift_issue as issue_for

    try:
        data = json.loads(report.read_text())
        has_drift = bool(data["drift"])
        env = str(data["environment"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{report} is not a drift report ({exc}): the drift check failed before it could report.",
            hint="Read the drift step's log above; `labkit stack drift ENV --json` writes the report.",
        ) from None
    if not has_drift:
        typer.echo(f"{env}: no drift, no issue")
        return
    title, body, labels = issue_for(data, run_url)
    result = GitHub.from_env().open_or_update_issue(title, body, labels)
    typer.echo(f"{'opened' if result.created else 'updated'} issue #{result.number}: {result.url}")


@github_app.command("plan-run")
def plan_run(
    commit: Annotated[str, typer.Option(help="The commit pushed to the branch (GITHUB_SHA).")],
    workflow: Annotated[str, typer.Option(help="The workflow file that made the plans.")] = "terraform.yml",
) -> None:
    """The pull-request run whose plans belong to COMMIT: prints ``head_sha=`` (check it out to apply
    them), ``run_id=`` (its artifacts) and ``pull_request=``, for ``>> "$GITHUB_OUTPUT"``."""
    found = GitHub.from_env().plan_run(workflow, commit)
    typer.echo(f"head_sha={found.head_sha}\nrun_id={found.run_id}\npull_request={found.pull_request}")


@github_app.command("plan-summary")
def plan_summary(
    plan: Annotated[Path, typer.Argument(help="A plan saved by `labkit stack plan ENV --out-file FILE`.")],
    output: Annotated[
        Path | None, typer.Option(help="What `labkit stack plan` printed, shown under the record.")
    ] = None,
) -> None:
    """A saved plan (its sidecar record) as Markdown, for ``>> "$GITHUB_STEP_SUMMARY"``."""
    from labkit.delivery.summaries import plan_summary as markdown
    from labkit.infra.planfile import read_record

    text = output.read_text() if output is not None and output.is_file() else None
    typer.echo(markdown(read_record(plan), plan.name, text), nl=False)


@notify_app.command("deploy")
def notify_deploy(
    ctx: typer.Context,
    env: Annotated[str, typer.Argument(help="The environment deployed to.")],
    version: Annotated[str, typer.Argument(help="The release deployed.")],
    outcome: Annotated[str, typer.Option(help="How the job ended: ${{ job.status }} (success, failure).")],
    run_url: RunUrl,
    webhook_url: Annotated[
        str,
        typer.Option(
            envvar="LABKIT_WEBHOOK_URL",
            show_default=False,
            help="The incoming webhook (a secret: pass it in the environment, not on the command line).",
        ),
    ] = "",
    save: Annotated[Path | None, typer.Option(help="Also write the message sent, as JSON.")] = None,
) -> None:
    """Post the deploy of VERSION to ENV to the webhook: the outcome, the ledger's record and its timed
    phases, and the run's link."""
    from labkit.delivery.notify import deploy_message, send
    from labkit.deploy.ledger import Ledger
    from labkit.infra.stack import StackNames

    if not webhook_url:
        raise ConfigError(
            "No webhook to notify: LABKIT_WEBHOOK_URL is empty.",
            hint="Add the repository secret DEPLOY_WEBHOOK_URL (a Slack-compatible incoming webhook); the "
            "deploy workflow passes it as LABKIT_WEBHOOK_URL.",
        )
    record, events, note = None, [], None
    try:
        chosen = target(ctx)
        book = Ledger(chosen, StackNames.for_target(chosen).ledger_table)
        record = next((d for d in book.list(env) if d.version == version), None)
        events = book.events(record.id) if record is not None else []
    except (LabkitError, BotoCoreError, ClientError) as exc:
        # The notification still goes out (it says why the job failed); the log has the error.
        note = f"not readable ({type(exc).__name__})"
        typer.echo(f"the ledger could not be read: {exc}", err=True)
    message = deploy_message(env, version, outcome, run_url, record, events, ledger_note=note)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(message, indent=2) + "\n")
    send(webhook_url, message)
    typer.echo(f"notified: {message['text']}")
