"""The claims of a GitHub Actions ID token, as GitHub's OIDC issuer writes them.

GitHub names the workflow run in ``sub``: ``repo:OWNER/REPO:environment:NAME`` for a job that
targets an environment, ``repo:OWNER/REPO:pull_request`` for a pull request, otherwise
``repo:OWNER/REPO:ref:REF`` (a branch ``refs/heads/...`` or a tag ``refs/tags/...``). A role's trust
policy matches ``sub`` and ``aud``; the other claims describe the run.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from labkit.errors import IdentityError

#: The audience that aws-actions/configure-aws-credentials asks for, and IAM providers list.
STS_AUDIENCE = "sts.amazonaws.com"
#: GitHub's issuer (its IAM OIDC provider's URL on AWS).
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
#: How long a token made here is valid, in seconds.
DEFAULT_TTL_S = 300

_REPOSITORY = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class WorkflowRun:
    """What a token describes: the repository, the ref, and the environment or event of the job."""

    repository: str
    ref: str = "refs/heads/main"
    environment: str | None = None
    event_name: str = "push"
    workflow: str = ".github/workflows/deploy.yml"
    sha: str = "0" * 40

    def __post_init__(self) -> None:
        if not _REPOSITORY.match(self.repository):
            raise IdentityError(
                f"{self.repository!r} is not a GitHub repository name.", hint='Give it as "owner/name".'
            )
        if not self.ref.startswith(("refs/heads/", "refs/tags/", "refs/pull/")):
            raise IdentityError(
                f"{self.ref!r} is not a full git ref.",
                hint="Give a branch as refs/heads/NAME (a tag as refs/tags/NAME).",
            )

    @property
    def subject(self) -> str:
        """``sub`` as GitHub builds it: the environment wins, then a pull request, then the ref."""
        if self.environment:
            return f"repo:{self.repository}:environment:{self.environment}"
        if self.event_name in ("pull_request", "pull_request_target"):
            return f"repo:{self.repository}:pull_request"
        return f"repo:{self.repository}:ref:{self.ref}"

    def claims(self, *, issuer: str, audience: str, now: int, ttl_s: int = DEFAULT_TTL_S) -> dict[str, Any]:
        """The token's claims, issued at ``now`` (epoch seconds) and valid for ``ttl_s``."""
        owner = self.repository.split("/")[0]
        ref_type = "tag" if self.ref.startswith("refs/tags/") else "branch"
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "sub": self.subject,
            "aud": audience,
            "ref": self.ref,
            "ref_type": ref_type,
            "sha": self.sha,
            "repository": self.repository,
            "repository_owner": owner,
            "event_name": self.event_name,
            "workflow": self.workflow.rsplit("/", 1)[-1],
            "workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "job_workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "runner_environment": "self-hosted",
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
        }
        if self.environment:
            claims["environment"] = self.environment
        return claims


def parse_subject(subject: str) -> WorkflowRun:
    """The run that a ``sub`` names (``repo:O/R:environment:E``, ``repo:O/R:ref:REF`` or
    ``repo:O/R:pull_request``)."""
    match = re.match(r"^repo:([^:]+):(environment:(.+)|ref:(.+)|pull_request)$", subject)
    if match is None:
        raise IdentityError(
            f"{subject!r} is not a GitHub Actions subject.",
            hint="Use repo:OWNER/REPO:environment:NAME, repo:OWNER/REPO:ref:refs/heads/BRANCH or "
            "repo:OWNER/REPO:pull_request.",
        )
    (
        repository,
        _,
        environment,
        ref,
    ) = match.groups()
    if environment:
        return WorkflowRun(repository, environment=environment)
    if ref:
        return WorkflowRun(repository, ref=ref)
    return WorkflowRun(repository, ref="refs/pull/1/merge", event_name="pull_request")
