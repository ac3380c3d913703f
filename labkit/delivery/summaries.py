"""Markdown a workflow shows: a saved plan for the job summary, and the drift issue's title and body."""

from __future__ import annotations

from typing import Any

from labkit.infra.planfile import PlanRecord

#: The label on every issue the drift check opens (with the environment's name as a second one).
DRIFT_LABEL = "drift"


def plan_summary(record: PlanRecord, plan_file: str, output: str | None = None) -> str:
    """A saved plan's record (and, when given, what ``labkit stack plan`` printed) as Markdown."""
    lines = [
        f"### Plan: {record.environment}",
        "",
        f"**{record.summary}**",
        "",
        "| | |",
        "|---|---|",
        f"| commit | `{record.commit}`{' (with uncommitted changes)' if record.dirty else ''} |",
        f"| state | serial {record.state_serial}, lineage `{record.state_lineage or '(none)'}` |",
        f"| file | `{plan_file}` (sha256 `{record.sha256[:12]}...`) |",
        f"| made | {record.created_at} on {record.target} |",
    ]
    if output and output.strip():
        lines += ["", "```", output.strip(), "```"]
    return "\n".join(lines) + "\n"


def drift_issue(report: dict[str, Any], run_url: str) -> tuple[str, str, list[str]]:
    """The title, body and labels of the issue for a drift report (``labkit stack drift ENV --json``)."""
    env = str(report["environment"])
    lines = [
        f"The scheduled drift check found changes made to **{env}** outside Terraform: the next apply "
        "would undo them.",
        "",
        "| resource | attribute | code | cloud |",
        "|---|---|---|---|",
    ]
    for resource in report.get("resources", []):
        if resource.get("kind") == "deleted" or not resource.get("attributes"):
            lines.append(f"| `{resource['address']}` | (deleted outside Terraform) | | |")
        for attribute in resource.get("attributes", []):
            lines.append(
                f"| `{resource['address']}` | `{attribute['attribute']}` | `{_cell(attribute['code'])}` "
                f"| `{_cell(attribute['cloud'])}` |"
            )
    lines += [
        "",
        f"Revert or adopt each change with `labkit runbook run reconcile-drift -p environment {env}` "
        "(a dry run first; the runbook workflow runs it too).",
        "",
        f"Last checked by {run_url}",
    ]
    return f"Drift in {env}", "\n".join(lines) + "\n", [DRIFT_LABEL, env]


def _cell(value: Any) -> str:
    """A value for a table cell: no pipes or line breaks to break the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")
