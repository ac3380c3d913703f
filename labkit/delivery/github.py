"""GitHub's REST API, the few calls the workflows make: deployments and their statuses, an issue
opened or updated by title, and the pull-request run that planned a merged commit.

In Actions the runner sets ``GITHUB_API_URL`` and ``GITHUB_REPOSITORY``; the job passes its token as
``GITHUB_TOKEN`` (``env: GITHUB_TOKEN: ${{ github.token }}``), with the permission each call needs.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from labkit.delivery.http import request_json
from labkit.errors import ConfigError, DeliveryError

DEFAULT_API_URL = "https://api.github.com"
#: The REST API version the calls are written against (GitHub's ``X-GitHub-Api-Version``).
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"

#: The states GitHub accepts for a deployment status.
DeploymentState = Literal["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]
DEPLOYMENT_STATES: tuple[DeploymentState, ...] = (
    "error", "failure", "inactive", "in_progress", "queued", "pending", "success",
)  # fmt: skip


@dataclass(frozen=True)
class IssueResult:
    """The issue :meth:`GitHub.open_or_update_issue` wrote, and whether it made a new one."""

    number: int
    url: str
    created: bool


@dataclass(frozen=True)
class PlanRun:
    """The pull-request run of a workflow whose artifacts belong to a merged commit."""

    head_sha: str
    run_id: int
    pull_request: int


class GitHub:
    """A client for one repository (``OWNER/NAME``) on one API (github.com's or a server's)."""

    def __init__(self, repository: str, token: str, api_url: str = DEFAULT_API_URL) -> None:
        owner, sep, name = repository.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ConfigError(
                f"{repository!r} is not a repository as OWNER/NAME.",
                hint="In Actions GITHUB_REPOSITORY holds it; elsewhere set it, e.g. octo-org/bluegreen-lab.",
            )
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self._token = token

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GitHub:
        """The client Actions' variables describe: GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(name)]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set.",
                hint="In a workflow step set `env: GITHUB_TOKEN: ${{ github.token }}` (the runner sets "
                "GITHUB_REPOSITORY); elsewhere export both, the token with the rights the call needs.",
            )
        api_url = env.get("GITHUB_API_URL") or DEFAULT_API_URL
        return cls(env["GITHUB_REPOSITORY"], env["GITHUB_TOKEN"], api_url)

    def headers(self) -> dict[str, str]:
        return {
            "Accept": ACCEPT,
            "Authorization": f"Bearer {self._token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "labkit",
        }

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, str] | None = None) -> Any:
        """``method`` on ``/repos/OWNER/NAME{path}``; the parsed JSON answer."""
        url = f"{self.api_url}/repos/{self.repository}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return request_json(method, url, headers=self.headers(), body=body)

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(self, ref: str, environment: str, *, description: str, payload: Any = None) -> int:
        """A deployment of ``ref`` to ``environment``; its id. No merge of the default branch and no
        required status contexts: the workflow that calls this has already run its checks."""
        answer = self.call(
            "POST",
            "/deployments",
            {
                "ref": ref,
                "environment": environment,
                "description": description,
                "auto_merge": False,
                "required_contexts": [],
                "production_environment": environment == "production",
                "payload": payload or {},
            },
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise DeliveryError(
                f"GitHub made no deployment of {ref} to {environment}: {message}",
                hint="Check that the ref exists in the repository and the job has `deployments: write`.",
            )
        return int(answer["id"])

    def create_deployment_status(
        self,
        deployment_id: int,
        state: DeploymentState,
        *,
        log_url: str | None = None,
        environment_url: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Set a deployment's state; a success marks the environment's earlier deployments inactive."""
        if state not in DEPLOYMENT_STATES:
            raise ConfigError(
                f"{state!r} is not a deployment state.", hint=f"Use one of: {', '.join(DEPLOYMENT_STATES)}."
            )
        body: dict[str, Any] = {"state": state, "auto_inactive": True}
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        if description:
            body["description"] = description[:140]  # GitHub's limit for a status description
        answer = self.call("POST", f"/deployments/{deployment_id}/statuses", body)
        return answer if isinstance(answer, dict) else {}

    # -- issues -----------------------------------------------------------------------------

    def open_or_update_issue(self, title: str, body: str, labels: Sequence[str]) -> IssueResult:
        """The open issue titled ``title`` (among those with ``labels``) gets ``body``; without one,
        a new issue is opened. One issue per title, however often the check finds the same thing."""
        query = {"state": "open", "labels": ",".join(labels), "per_page": "100"}
        listed = self.call("GET", "/issues", query=query) or []
        existing = next(
            (i for i in listed if i.get("title") == title and "pull_request" not in i),
            None,
        )
        if existing is not None:
            number = int(existing["number"])
            answer = self.call("PATCH", f"/issues/{number}", {"body": body})
            return IssueResult(number=number, url=str(answer.get("html_url", "")), created=False)
        answer = self.call("POST", "/issues", {"title": title, "body": body, "labels": list(labels)})
        return IssueResult(number=int(answer["number"]), url=str(answer.get("html_url", "")), created=True)

    # -- the run that planned a merged commit -----------------------------------------------

    def plan_run(self, workflow: str, commit: str) -> PlanRun:
        """The successful ``pull_request`` run of ``workflow`` for the head of the pull request that
        was merged as ``commit``: its artifacts hold the plans made from that head."""
        pulls = self.call("GET", f"/commits/{commit}/pulls") or []
        merged = [p for p in pulls if p.get("merged_at")]
        pull = next((p for p in merged if p.get("merge_commit_sha") == commit), merged[0] if merged else None)
        if pull is None:
            raise DeliveryError(
                f"No merged pull request brought commit {commit[:7]}: nothing planned it.",
                hint="Changes reach develop and main through pull requests, whose plans are applied; "
                "open one, let its plans run, and merge it.",
            )
        head_sha = str(pull["head"]["sha"])
        runs = self.call(
            "GET",
            f"/actions/workflows/{workflow}/runs",
            query={"head_sha": head_sha, "event": "pull_request", "status": "success", "per_page": "1"},
        )
        found = (runs or {}).get("workflow_runs") or []
        if not found:
            raise DeliveryError(
                f"No successful {workflow} run for pull request #{pull['number']} at {head_sha[:7]}.",
                hint="Re-run the pull request's checks (or push to it) so that its plans exist, then "
                "re-run this job.",
            )
        return PlanRun(head_sha=head_sha, run_id=int(found[0]["id"]), pull_request=int(pull["number"]))
