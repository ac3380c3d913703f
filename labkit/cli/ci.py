"""`labkit ci token | credentials`: GitHub Actions' OIDC flow, in a workflow or on the sandbox.

Where the ID token comes from: in a GitHub Actions job with ``permissions: id-token: write``, from
GitHub (``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``); elsewhere on the
sandbox, from the sandbox's own issuer, with the claims the options choose (the workflow run a token
describes). ``credentials`` exchanges it for a role's temporary credentials.
"""

from __future__ import annotations

import enum
import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from labkit.cli.context import target
from labkit.errors import IdentityError

ci_app = typer.Typer(
    help="GitHub Actions' OIDC flow: an ID token, and a role's temporary credentials for it.",
    no_args_is_help=True,
)


class OutputFormat(enum.StrEnum):
    env = "env"
    github_env = "github-env"
    json = "json"


Audience = Annotated[
    str, typer.Option(help="The token's aud: what the IAM OIDC provider lists as a client id.")
]
Repository = Annotated[
    str | None,
    typer.Option(
        envvar="GITHUB_REPOSITORY",
        help="Sandbox token: the repository (owner/name) of the workflow run it describes.",
    ),
]
Ref = Annotated[
    str, typer.Option(help="Sandbox token: the run's git ref (refs/heads/BRANCH, refs/tags/TAG).")
]
Environment = Annotated[
    str | None,
    typer.Option(help="Sandbox token: the GitHub environment of the job (sub becomes ...:environment:NAME)."),
]
PullRequest = Annotated[
    bool, typer.Option("--pull-request", help="Sandbox token: a pull_request run (sub ...:pull_request).")
]
Subject = Annotated[
    str | None,
    typer.Option(help="Sandbox token: the whole sub (repo:O/R:ref:REF, ...), instead of the options above."),
]


def _id_token(
    ctx: typer.Context,
    audience: str,
    repository: str | None,
    ref: str,
    environment: str | None,
    pull_request: bool,
    subject: str | None,
) -> str:
    from labkit import sandbox
    from labkit.identity.github import WorkflowRun, parse_subject

    if subject is not None:
        run: WorkflowRun | None = parse_subject(subject)
    elif repository is not None:
        event = "pull_request" if pull_request else "push"
        run = WorkflowRun(repository, ref=ref, environment=environment, event_name=event)
    else:
        run = None  # in an Actions job the token describes the job's own run
    return sandbox.id_token(target(ctx), run, audience=audience)


@ci_app.command("token")
def token(
    ctx: typer.Context,
    audience: Audience = "sts.amazonaws.com",
    repository: Repository = None,
    ref: Ref = "refs/heads/main",
    environment: Environment = None,
    pull_request: PullRequest = False,
    subject: Subject = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print the token itself instead of its claims.")] = False,
) -> None:
    """Get an ID token (from GitHub in a workflow job, else from the sandbox's issuer) and print its
    claims as JSON, with iat and exp also as UTC times. The signature is not checked here: STS does."""
    from labkit.identity.jwt import decode_unverified

    value = _id_token(ctx, audience, repository, ref, environment, pull_request, subject)
    if raw:
        typer.echo(value)
        return
    _, claims = decode_unverified(value)
    for name in ("iat", "exp"):
        if isinstance(claims.get(name), int):
            claims[f"{name} (UTC)"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims[name]))
    typer.echo(json.dumps(claims, indent=2, sort_keys=True))


@ci_app.command("credentials")
def credentials(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="ARN of the role to assume (the global environment's output).")],
    audience: Audience = "sts.amazonaws.com",
    repository: Repository = None,
    ref: Ref = "refs/heads/main",
    environment: Environment = None,
    pull_request: PullRequest = False,
    subject: Subject = None,
    session_name: Annotated[str, typer.Option(help="The role session's name (in the assumed-role ARN).")] = (
        "labkit-ci"
    ),
    duration: Annotated[
        int, typer.Option(help="Seconds the credentials last (900 up to the role's maximum).")
    ] = 3600,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help='env: `export AWS_...=...` lines for `eval "$(labkit ci credentials ...)"`; '
            "github-env: appends AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN to the file "
            "$GITHUB_ENV names (later steps of the job get them) and prints ::add-mask:: commands; "
            "json: the credential_process document of the AWS config file (Version 1, with Expiration).",
        ),
    ] = OutputFormat.env,
) -> None:
    """Exchange an ID token for ROLE's temporary credentials (STS AssumeRoleWithWebIdentity) and print
    them. A refusal exits 1 with STS's error code and message."""
    from labkit.identity.credentials import assume_role_with_web_identity, github_masks, render

    value = _id_token(ctx, audience, repository, ref, environment, pull_request, subject)
    found = assume_role_with_web_identity(
        target(ctx), role, value, session_name=session_name, duration_s=duration
    )
    if output is OutputFormat.github_env:
        env_file = os.environ.get("GITHUB_ENV", "")
        if not env_file:
            raise IdentityError(
                "--format github-env writes to the file $GITHUB_ENV names, and it is unset.",
                hint="Use it in a GitHub Actions step; elsewhere use --format env or json.",
            )
        typer.echo(github_masks(found), nl=False)
        with Path(env_file).open("a") as out:
            out.write(render(found, "github-env"))
        until = f"{found.expiration:%H:%M:%S} UTC"
        typer.echo(f"credentials of {found.assumed_role_arn} (until {until}) are in $GITHUB_ENV")
        return
    as_json = output is OutputFormat.json
    typer.echo(render(found, "json" if as_json else "env"), nl=as_json)
