"""Lesson 11's steps: GitHub Actions' OIDC flow against the sandbox, a denied call, the workflows.

The token comes from the sandbox's own issuer (``labkit.sandbox.oidc_issuer``), with the claims a
GitHub Actions job gets; STS checks it as AWS does (:mod:`labkit.identity.webidentity`). On AWS only
a workflow job can get such a token, so the token steps refuse ``target="aws"``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from labkit.identity import policy
from labkit.identity.credentials import TemporaryCredentials, assume_role_with_web_identity
from labkit.identity.github import WorkflowRun, parse_subject
from labkit.identity.jwt import decode_unverified
from labkit.infra.stack import Stack
from labkit.settings import PROJECT_ROOT
from labkit.target import Target

#: What each claim a deploy job's token carries says (GitHub's documentation, in short).
CLAIMS = {
    "iss": "who signed it: the issuer the IAM OIDC provider names",
    "aud": "who it is for: a client id of that provider (sts.amazonaws.com)",
    "sub": "the subject a trust policy matches: repository and environment, branch or pull request",
    "repository": "the repository whose workflow ran",
    "ref": "the git ref the run is for",
    "environment": "the GitHub environment of the job (with its protection rules)",
    "job_workflow_ref": "the workflow file and ref that ran the job",
    "event_name": "what started the run (push, pull_request, ...)",
    "exp": "when it expires (epoch seconds): minutes after it was issued",
}


def github_variables(target: Target, subject: str) -> dict[str, Any]:
    """global's GitHub variables for a deploy role that trusts ``subject`` (``repo:O/R:environment:E``
    or ``repo:O/R:ref:refs/heads/B``): the repository and subject, and on the sandbox its issuer's
    URL and thumbprint (on AWS the root's defaults, GitHub's, apply). Needed once: later applies of
    global carry them over (its ``github_settings`` output)."""
    run = parse_subject(subject)
    trusted = (
        {"environment": run.environment}
        if run.environment
        else {"branch": run.ref.removeprefix("refs/heads/")}
    )
    values: dict[str, Any] = {"github_repository": run.repository, "github_subject": trusted}
    if target.is_sandbox:
        from labkit import sandbox

        issuer = sandbox.oidc_issuer(target)
        values.update(github_oidc_issuer_url=issuer.url, github_oidc_thumbprints=[issuer.thumbprint])
    return values


def apply_global_with_oidc(target: Target, repository: str) -> dict[str, Any]:
    """Apply ``global`` with the IAM OIDC provider for the target's issuer, the deploy role (trusting
    ``repo:REPOSITORY:environment:staging``) and the read-only plan role (pull requests); its outputs."""
    stack = Stack("global", target)
    stack.apply(github_variables(target, f"repo:{repository}:environment:staging"))
    return stack.outputs()


def sandbox_token(
    target: Target, repository: str, *, environment: str | None = None, ref: str = "refs/heads/main",
    pull_request: bool = False,
) -> str:  # fmt: skip
    """An ID token from the sandbox's issuer, as a job of ``repository`` would get it (never GitHub's,
    even inside an Actions job: the sandbox's STS trusts only its own issuer)."""
    from labkit import sandbox

    event = "pull_request" if pull_request else "push"
    run = WorkflowRun(repository, ref=ref, environment=environment, event_name=event)
    return sandbox.id_token(target, run, from_actions=False)


def claims_table(token: str) -> pd.DataFrame:
    """The token's claims that a trust policy or a reader cares about, with what each says."""
    _, claims = decode_unverified(token)
    rows = [
        {"claim": name, "value": claims.get(name), "what it says": meaning}
        for name, meaning in CLAIMS.items()
    ]
    return pd.DataFrame(rows).set_index("claim")


def trust_conditions(target: Target, role_arn: str) -> pd.DataFrame:
    """The role's trust policy as IAM holds it: one row per condition of each statement (each
    allows ``sts:AssumeRoleWithWebIdentity``)."""
    name = role_arn.rsplit("/", 1)[-1]
    document = target.client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    rows = []
    for statement in policy.statements(document):
        principal = statement.get("Principal", {})
        for operator, keys in statement.get("Condition", {}).items():
            for key, values in keys.items():
                rows.append(
                    {
                        "principal": ", ".join(policy.as_list(principal.get("Federated", principal))),
                        "test": operator,
                        "key": key,
                        "values": ", ".join(policy.as_list(values)),
                    }
                )
    return pd.DataFrame(rows)


def assume(target: Target, role_arn: str, token: str) -> TemporaryCredentials:
    """Exchange ``token`` for ``role_arn``'s credentials: STS ``AssumeRoleWithWebIdentity``."""
    return assume_role_with_web_identity(target, role_arn, token, session_name="lesson-11")


def who_am_i(target: Target, credentials: TemporaryCredentials) -> str:
    """The caller STS sees with ``credentials``: the assumed role and its session."""
    return str(
        target.as_identity(credentials.as_target_credentials()).client("sts").get_caller_identity()["Arn"]
    )


def outcome(call: Callable[[], object]) -> str:
    """What ``call`` answered: "allowed", or the refusal's code and message as the service sent them."""
    from botocore.exceptions import ClientError

    from labkit.errors import WebIdentityRejected

    try:
        call()
    except WebIdentityRejected as exc:
        return f"refused: {exc.code}: {exc.message.split(': ', 2)[-1]}"
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return f"refused: {error.get('Code')}: {error.get('Message')}"
    return "allowed"


def granting_statements(target: Target, role_arn: str, action: str, resource: str) -> pd.DataFrame:
    """The statements of the role's inline policies that allow ``action`` on ``resource``: where a
    missing right is added (in Terraform, the role's policy documents in the github_oidc module)."""
    iam = target.client("iam")
    name = role_arn.rsplit("/", 1)[-1]
    rows = []
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        for statement in policy.statements(document):
            actions, resources = (
                policy.as_list(statement.get("Action")),
                policy.as_list(statement.get("Resource")),
            )
            if (
                statement.get("Effect") == "Allow"
                and any(policy.wildcard_match(p.lower(), action.lower()) for p in actions)
                and any(policy.wildcard_match(r, resource) for r in resources)
            ):
                rows.append(
                    {"policy": policy_name, "sid": statement.get("Sid", ""), "actions": ", ".join(actions)}
                )
    return pd.DataFrame(rows, columns=["policy", "sid", "actions"])


def workflows(folder: Path | None = None) -> pd.DataFrame:
    """Each job of ``.github/workflows``: its trigger, environment, concurrency group, permissions and
    the commands its ``run:`` steps call."""
    import yaml

    rows = []
    for path in sorted((folder or PROJECT_ROOT / ".github" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text())
        triggers = workflow.get("on", workflow.get(True, {}))  # YAML 1.1 reads a bare `on` as True
        for job_id, job in (workflow.get("jobs") or {}).items():
            commands = [" ".join(step["run"].split()[:3]) for step in job.get("steps", []) if "run" in step]
            permissions = job.get("permissions", workflow.get("permissions", {})) or {}
            rows.append(
                {
                    "workflow": path.name,
                    "on": ", ".join(triggers) if isinstance(triggers, dict) else str(triggers),
                    "job": job_id,
                    "environment": "yes" if job.get("environment") else "",
                    "concurrency": "yes" if job.get("concurrency") else "",
                    "permissions": ", ".join(f"{k}: {v}" for k, v in permissions.items()),
                    "runs": "; ".join(dict.fromkeys(commands)),
                }
            )
    return pd.DataFrame(rows).set_index(["workflow", "job"])
