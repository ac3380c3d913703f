"""labkit github ... and labkit notify ... against a server on loopback that records every call:
the exact method, path, query, headers (auth, accept, API version) and JSON body of each.

Each command is built from tests/workflow_commands.py, as the workflows write it, and run in-process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner, Result
from werkzeug import Request

from labkit.cli import app
from labkit.deploy.ledger import Ledger, ensure_table
from labkit.deploy.strategy import canary
from labkit.errors import ConfigError, DeliveryError
from labkit.infra.drift import AttributeDrift, DriftReport, ResourceDrift
from labkit.infra.planfile import PlanRecord, sidecar_path
from labkit.infra.stack import StackNames
from labkit.target import Target
from tests.workflow_commands import (
    GITHUB_DEPLOYMENT_CREATE,
    GITHUB_DEPLOYMENT_STATUS,
    GITHUB_DRIFT_ISSUE,
    GITHUB_PLAN_RUN,
    GITHUB_PLAN_SUMMARY,
    NOTIFY_DEPLOY,
)

REPO = "octo-org/bluegreen-lab"
TOKEN = "ghs_test-token"
SHA = "3f2a1b9c" * 5
HEAD = "9e8d7c6b" * 5
RUN_URL = "https://github.com/octo-org/bluegreen-lab/actions/runs/1234"
WEBHOOK_PATH = "/services/T000/B000/secret-part"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver's server on loopback only, on a free port."""
    return ("127.0.0.1", 0)


@pytest.fixture()
def github(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServer]:
    """The recording server as GitHub's API, in the variables a workflow step has."""
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("").rstrip("/"))
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("LABKIT_RUN_URL", RUN_URL)
    yield httpserver
    httpserver.clear()


def labkit(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def calls(server: HTTPServer) -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, path with query, the headers that matter, JSON body) of each recorded call."""
    out = []
    for request, _response in server.log:
        assert isinstance(request, Request)
        path = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
        body = json.loads(request.get_data()) if request.get_data() else None
        out.append((request.method, path, _github_headers(request), body))
    return out


def _github_headers(request: Request) -> dict[str, str]:
    names = ("Authorization", "Accept", "X-GitHub-Api-Version", "Content-Type")
    return {name: request.headers[name] for name in names if name in request.headers}


GITHUB_HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}
WITH_BODY = {**GITHUB_HEADERS, "Content-Type": "application/json"}


# -- the Deployments API --------------------------------------------------------------------------


def test_a_deployment_is_created_then_its_statuses_set(github: HTTPServer) -> None:
    github.expect_ordered_request(f"/repos/{REPO}/deployments", method="POST").respond_with_json(
        {"id": 42, "environment": "staging"}, status=201
    )
    for _ in range(2):
        github.expect_ordered_request(
            f"/repos/{REPO}/deployments/42/statuses", method="POST"
        ).respond_with_json({"id": 1}, status=201)

    created = labkit(*GITHUB_DEPLOYMENT_CREATE.args(env="staging", ref=SHA))
    assert created.exit_code == 0, created.output
    assert created.output == "id=42\n"  # a line for $GITHUB_OUTPUT
    started = labkit(*GITHUB_DEPLOYMENT_STATUS.args(deployment_id="42", state="in_progress"))
    ended = labkit(*GITHUB_DEPLOYMENT_STATUS.args(deployment_id="42", state="failure"))
    assert started.exit_code == ended.exit_code == 0, started.output + ended.output

    github.check_assertions()
    assert calls(github) == [
        ("POST", f"/repos/{REPO}/deployments", WITH_BODY, {
            "ref": SHA, "environment": "staging", "description": f"{SHA} to staging", "auto_merge": False,
            "required_contexts": [], "production_environment": False, "payload": {},
        }),
        ("POST", f"/repos/{REPO}/deployments/42/statuses", WITH_BODY,
         {"state": "in_progress", "auto_inactive": True, "log_url": RUN_URL}),
        ("POST", f"/repos/{REPO}/deployments/42/statuses", WITH_BODY,
         {"state": "failure", "auto_inactive": True, "log_url": RUN_URL}),
    ]  # fmt: skip


def test_production_is_marked_a_production_environment(github: HTTPServer) -> None:
    github.expect_request(f"/repos/{REPO}/deployments", method="POST").respond_with_json(
        {"id": 7}, status=201
    )
    assert labkit(*GITHUB_DEPLOYMENT_CREATE.args(env="production", ref=SHA)).output == "id=7\n"
    ((_, _, _, body),) = calls(github)
    assert body["production_environment"] is True and body["environment"] == "production"


def test_a_refused_call_names_the_status_github_s_message_and_the_permission(github: HTTPServer) -> None:
    github.expect_request(f"/repos/{REPO}/deployments", method="POST").respond_with_json(
        {"message": "Resource not accessible by integration"}, status=403
    )
    result = labkit(*GITHUB_DEPLOYMENT_CREATE.args(env="staging", ref=SHA))
    assert isinstance(result.exception, DeliveryError)
    assert (
        "403" in result.exception.message
        and "Resource not accessible by integration" in result.exception.message
    )
    assert "deployments: write" in str(result.exception.hint)


def test_a_status_github_does_not_know_is_refused_before_any_call(github: HTTPServer) -> None:
    result = labkit(*GITHUB_DEPLOYMENT_STATUS.args(deployment_id="42", state="done"))
    assert result.exit_code == 2 and "'done' is not one of" in result.output
    assert github.log == []


def test_without_a_token_nothing_is_called(github: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    result = labkit(*GITHUB_DEPLOYMENT_CREATE.args(env="staging", ref=SHA))
    assert isinstance(result.exception, ConfigError) and "GITHUB_TOKEN" in result.exception.message
    assert github.log == []


# -- the drift issue ------------------------------------------------------------------------------


def drift_report(tmp_path: Path, *, drifted: bool) -> Path:
    resources = (
        ResourceDrift("module.env.aws_lb_listener_rule.app", "aws_lb_listener_rule", "changed",
                      (AttributeDrift("action[0].forward.target_group[0].weight", 100, 50),)),
        ResourceDrift("module.env.aws_security_group_rule.debug", "aws_security_group_rule", "deleted"),
    ) if drifted else ()  # fmt: skip
    path = tmp_path / "drift-staging.json"
    path.write_text(json.dumps(DriftReport("staging", resources).to_json()))
    return path


def test_drift_opens_an_issue_then_updates_the_open_one(github: HTTPServer, tmp_path: Path) -> None:
    report = drift_report(tmp_path, drifted=True)
    listing = f"/repos/{REPO}/issues"
    query = "state=open&labels=drift%2Cstaging&per_page=100"
    github.expect_ordered_request(listing, method="GET", query_string=query).respond_with_json([])
    github.expect_ordered_request(listing, method="POST").respond_with_json(
        {"number": 5, "html_url": "https://github.com/octo-org/bluegreen-lab/issues/5"}, status=201
    )
    github.expect_ordered_request(listing, method="GET", query_string=query).respond_with_json(
        [
            {"number": 6, "title": "Drift in staging", "pull_request": {}},  # a pull request, not the issue
            {"number": 5, "title": "Drift in staging"},
        ]
    )
    github.expect_ordered_request(f"{listing}/5", method="PATCH").respond_with_json(
        {"number": 5, "html_url": "https://github.com/octo-org/bluegreen-lab/issues/5"}
    )

    opened = labkit(*GITHUB_DRIFT_ISSUE.args(report=str(report)))
    assert opened.exit_code == 0, opened.output
    assert opened.output == "opened issue #5: https://github.com/octo-org/bluegreen-lab/issues/5\n"
    updated = labkit(*GITHUB_DRIFT_ISSUE.args(report=str(report)))
    assert updated.output.startswith("updated issue #5"), updated.output

    github.check_assertions()
    (_, (_, _, headers, created), _, (method, _, _, patched)) = calls(github)
    assert headers == WITH_BODY and method == "PATCH"
    assert created["title"] == "Drift in staging" and created["labels"] == ["drift", "staging"]
    body = created["body"]
    assert patched == {"body": body}
    for expected in (
        "| `module.env.aws_lb_listener_rule.app` | `action[0].forward.target_group[0].weight` "
        "| `100` | `50` |",
        "| `module.env.aws_security_group_rule.debug` | (deleted outside Terraform) | | |",
        "labkit runbook run reconcile-drift -p environment staging",
        f"Last checked by {RUN_URL}",
    ):
        assert expected in body


def test_no_drift_calls_nothing_and_a_failed_check_fails(github: HTTPServer, tmp_path: Path) -> None:
    clean = labkit(*GITHUB_DRIFT_ISSUE.args(report=str(drift_report(tmp_path, drifted=False))))
    assert clean.exit_code == 0 and clean.output == "staging: no drift, no issue\n"
    empty = tmp_path / "drift-production.json"
    empty.write_text("")  # `labkit stack drift` failed: nothing on stdout
    failed = labkit(*GITHUB_DRIFT_ISSUE.args(report=str(empty)))
    assert isinstance(failed.exception, ConfigError) and "not a drift report" in failed.exception.message
    assert github.log == []


# -- the plans of a merged commit -----------------------------------------------------------------


def test_the_merged_pull_request_s_plan_run_is_found(github: HTTPServer) -> None:
    github.expect_ordered_request(f"/repos/{REPO}/commits/{SHA}/pulls", method="GET").respond_with_json([
        {"number": 2, "merged_at": None, "merge_commit_sha": "1" * 40, "head": {"sha": "2" * 40}},
        {"number": 3, "merged_at": "2026-12-02T10:00:00Z", "merge_commit_sha": SHA, "head": {"sha": HEAD}},
    ])  # fmt: skip
    github.expect_ordered_request(
        f"/repos/{REPO}/actions/workflows/terraform.yml/runs",
        method="GET",
        query_string={"head_sha": HEAD, "event": "pull_request", "status": "success", "per_page": "1"},
    ).respond_with_json({"total_count": 1, "workflow_runs": [{"id": 987654}]})

    found = labkit(*GITHUB_PLAN_RUN.args(commit=SHA))
    assert found.exit_code == 0, found.output
    assert found.output == f"head_sha={HEAD}\nrun_id=987654\npull_request=3\n"
    github.check_assertions()
    assert [(m, p, h) for m, p, h, _ in calls(github)] == [
        ("GET", f"/repos/{REPO}/commits/{SHA}/pulls", GITHUB_HEADERS),
        ("GET", f"/repos/{REPO}/actions/workflows/terraform.yml/runs?head_sha={HEAD}&event=pull_request"
         "&status=success&per_page=1", GITHUB_HEADERS),
    ]  # fmt: skip


def test_a_commit_no_pull_request_merged_is_refused(github: HTTPServer) -> None:
    github.expect_request(f"/repos/{REPO}/commits/{SHA}/pulls").respond_with_json([])
    result = labkit(*GITHUB_PLAN_RUN.args(commit=SHA))
    assert isinstance(result.exception, DeliveryError)
    assert "No merged pull request brought commit 3f2a1b9" in result.exception.message


def test_a_saved_plan_becomes_the_job_summary(tmp_path: Path) -> None:
    plan = tmp_path / "plans" / "staging.tfplan"
    plan.parent.mkdir()
    plan.write_bytes(b"PK")
    record = PlanRecord(
        environment="staging", target="aws", commit=HEAD, sha256="ab" * 32, state_serial=12,
        state_lineage="9c1e", variables={}, created_at="2026-12-02T14:05:09Z",
        summary="0 to add, 1 to change, 0 to destroy", has_changes=True,
    )  # fmt: skip
    sidecar_path(plan).write_text(record.to_json())
    printed = tmp_path / "plan-staging.txt"
    printed.write_text("  update   module.env.aws_lb_listener.http\n0 to add, 1 to change, 0 to destroy\n")

    result = labkit(*GITHUB_PLAN_SUMMARY.args(plan=str(plan), output=str(printed)))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [
        "### Plan: staging",
        "",
        "**0 to add, 1 to change, 0 to destroy**",
    ]
    assert (
        f"| commit | `{HEAD}` |" in result.output and "| state | serial 12, lineage `9c1e` |" in result.output
    )
    assert "```\nupdate   module.env.aws_lb_listener.http\n0 to add" in result.output


# -- the webhook notification ---------------------------------------------------------------------


@pytest.fixture()
def ledger(moto_target: Target) -> Ledger:
    """The ledger table on moto, with a rolled-back deployment of 1.4.0 to staging and its events."""
    table = StackNames.for_target(moto_target).ledger_table
    ensure_table(Target(name="aws", region=moto_target.region, allow_spend=True), table)
    book = Ledger(moto_target, table)
    record = book.start(
        "staging", "1.4.0", from_color="blue", to_color="green", strategy=canary(), from_version="1.3.0"
    )
    for phase in ("provision", "canary 10%"):
        with book.event(record.id, phase):
            pass
    book.finish(record.id, "rolled_back", "the analysis failed: 5xx rate 31 % > 1 %")
    return book


def test_the_deploy_notification_carries_the_outcome_the_ledger_s_timings_and_the_link(
    github: HTTPServer, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
    monkeypatch.setenv("LABKIT_WEBHOOK_URL", github.url_for(WEBHOOK_PATH))
    saved = tmp_path / "deploy" / "notification.json"

    notify = NOTIFY_DEPLOY.args(env="staging", version="1.4.0", outcome="failure", save=str(saved))
    result = labkit("--target", "aws", *notify)
    assert result.exit_code == 0, (result.output, result.exception)
    github.check_assertions()
    ((request, _),) = github.log
    assert request.headers["Content-Type"] == "application/json" and "Authorization" not in request.headers
    posted = json.loads(request.get_data())
    assert posted == json.loads(saved.read_text())
    assert posted["text"] == f":x: Deploy of 1.4.0 to staging failed: {RUN_URL}"
    fields = {
        f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in posted["blocks"][1]["fields"]
    }
    (record,) = ledger.list("staging")
    assert fields["Ledger status"] == "rolled back"
    assert fields["Reason"] == "the analysis failed: 5xx rate 31 % > 1 %"
    assert fields["Colors"] == "blue -> green (0 %)" and fields["Strategy"] == "canary"
    assert fields["Duration"] == f"{record.duration_s:.1f} s"
    timings = posted["blocks"][2]["text"]["text"].splitlines()
    events = ledger.events(record.id)
    assert timings[1:-1] == [f"{e.phase:<20} {e.duration_s:8.2f} s  ok" for e in events]
    assert [e.phase for e in events] == ["provision", "canary 10%"]
    assert posted["blocks"][-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"<{RUN_URL}|The run>"}],
    }


def test_the_notification_goes_out_when_the_ledger_cannot_be_read(
    github: HTTPServer, moto_target: Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    github.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
    monkeypatch.setenv("LABKIT_WEBHOOK_URL", github.url_for(WEBHOOK_PATH))
    notify = NOTIFY_DEPLOY.args(
        env="production", version="2.0.0", outcome="failure", save=str(tmp_path / "n.json")
    )
    result = labkit("--target", "aws", *notify)
    assert result.exit_code == 0, (result.output, result.exception)
    ((request, _),) = github.log
    fields = json.loads(request.get_data())["blocks"][1]["fields"]
    assert {"type": "mrkdwn", "text": "*Ledger*\nnot readable (LedgerError)"} in fields


def test_a_webhook_that_refuses_fails_without_showing_its_secret_path(
    github: HTTPServer, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    github.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("no_service", status=404)
    monkeypatch.setenv("LABKIT_WEBHOOK_URL", github.url_for(WEBHOOK_PATH))
    notify = NOTIFY_DEPLOY.args(
        env="staging", version="1.4.0", outcome="success", save=str(tmp_path / "n.json")
    )
    result = labkit("--target", "aws", *notify)
    assert isinstance(result.exception, DeliveryError)
    assert "404" in result.exception.message and "no_service" in result.exception.message
    assert "secret-part" not in str(result.exception)


def test_no_webhook_is_refused_before_anything_is_read(github: HTTPServer, tmp_path: Path) -> None:
    result = labkit(
        *NOTIFY_DEPLOY.args(env="staging", version="1.4.0", outcome="success", save=str(tmp_path / "n"))
    )
    assert isinstance(result.exception, ConfigError) and "LABKIT_WEBHOOK_URL" in result.exception.message
    assert github.log == []
