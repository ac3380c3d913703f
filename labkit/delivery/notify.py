"""The deploy notification: a Slack-compatible message (``{"text": ..., "blocks": [...]}``, which
Slack's incoming webhooks and the many services that copy them accept) with the outcome, the
ledger's timings and the link to the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.delivery.http import request_json

if TYPE_CHECKING:
    from labkit.deploy.ledger import Deployment, Event

#: How the job ended (``${{ job.status }}``) as a word people read, and its emoji.
OUTCOMES = {"success": ("succeeded", ":white_check_mark:"), "failure": ("failed", ":x:"),
            "cancelled": ("was cancelled", ":warning:")}  # fmt: skip


def deploy_message(
    env: str,
    version: str,
    outcome: str,
    run_url: str,
    deployment: Deployment | None,
    events: Sequence[Event] = (),
    *,
    ledger_note: str | None = None,
) -> dict[str, Any]:
    """The message for ``version``'s deployment to ``env`` that ended as ``outcome`` (a job status).

    ``deployment`` is its ledger record (None when the job stopped before the deploy wrote one);
    ``events`` its timed phases, each with its duration; ``ledger_note`` says why there is no record
    when the ledger could not be read.
    """
    said, emoji = OUTCOMES.get(outcome, (outcome, ":grey_question:"))
    text = f"{emoji} Deploy of {version} to {env} {said}"
    fields = [("Environment", env), ("Release", version), ("Job", outcome)]
    if deployment is None:
        fields.append(("Ledger", ledger_note or "no record: the job stopped before the deployment started"))
    else:
        took = f"{deployment.duration_s:.1f} s" if deployment.duration_s is not None else "not finished"
        fields += [
            ("Ledger status", deployment.status.replace("_", " ")),
            ("Colors", f"{deployment.from_color} -> {deployment.to_color} ({deployment.weight} %)"),
            ("Strategy", deployment.strategy.name),
            ("Duration", took),
        ]
        if deployment.reason:
            fields.append(("Reason", deployment.reason))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
    ]
    if events:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": timings(events)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{run_url}|The run>"}]})
    return {"text": f"{text}: {run_url}", "blocks": blocks}


def timings(events: Sequence[Event]) -> str:
    """The phases and their durations, one line each, as a code block."""
    lines = []
    for event in events:
        took = f"{event.duration_s:8.2f} s" if event.duration_s is not None else "  running"
        lines.append(f"{event.phase:<20} {took}  {event.outcome}")
    return "```\n" + "\n".join(lines) + "\n```"


def send(webhook_url: str, message: dict[str, Any]) -> None:
    """POST ``message`` to an incoming webhook (its URL is a secret: errors do not show its path)."""
    request_json("POST", webhook_url, headers={"User-Agent": "labkit"}, body=message, secret_url=True)
