"""A release's schema migrations run against an environment's database (issue 15 item 4).

The release's own code migrates, as it will on an instance: its artifact, from the artifact
bucket, is unpacked into a temporary folder and ``python -m app.migrations ACTION`` runs there
(app/migrations). The database is the one the environment's Terraform ``database`` output names;
the code reads the credentials from its RDS-managed secret with the target's credentials, as the
app reads them with the instance role's. So a release migrates to the revision its own
``release.json`` names, with the revisions it ships.

Where this runs must reach the database: the sandbox's is on loopback; on AWS the instance is in
the VPC's isolated subnets, reachable only from inside the VPC.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from labkit.deploy.colors import Layout
from labkit.errors import MigrationError
from labkit.infra.stack import Stack
from labkit.release.appserver import unpack_release
from labkit.release.build import ARTIFACT_NAME, release_key
from labkit.target import Target

Action = Literal["upgrade", "expand", "downgrade", "current", "history", "revision"]
#: The actions that read no database: the release's own revisions.
_NO_DATABASE = ("history", "revision")
#: How long one migration command may run; a migration that takes longer holds its lock too long.
TIMEOUT_S = 600.0
#: Settings of the caller's environment that would point the release's code elsewhere.
_OVERRIDES = ("APP_RELEASE_FILE", "PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")


@dataclass(frozen=True)
class EnvironmentDatabase:
    """An environment's database, as its ``database`` output describes it."""

    env: str
    identifier: str
    address: str
    port: int
    name: str
    secret_arn: str

    @classmethod
    def from_output(cls, env: str, output: Mapping[str, Any]) -> EnvironmentDatabase:
        return cls(
            env=env,
            identifier=str(output["identifier"]),
            address=str(output["address"]),
            port=int(output["port"]),
            name=str(output["database_name"]),
            secret_arn=str(output["master_user_secret_arn"]),
        )

    def app_settings(self) -> dict[str, str]:
        """The app's DATABASE_* settings (app/database.py), as the fleet module gives them."""
        return {
            "DATABASE_SECRET_ARN": self.secret_arn,
            "DATABASE_HOST": self.address,
            "DATABASE_PORT": str(self.port),
            "DATABASE_NAME": self.name,
        }


def environment_database(stack: Stack, outputs: Mapping[str, Any] | None = None) -> EnvironmentDatabase:
    """``stack``'s database, from its outputs (read now unless given); MigrationError when the
    environment was never applied or has no database."""
    found = stack.outputs() if outputs is None else outputs
    if not found:
        raise MigrationError(
            f"{stack.env} has not been applied on {stack.target.name}: it has no database to migrate.",
            hint=f"Build it with the database on: `labkit stack apply {stack.env} --var "
            "enable_database=true`.",
        )
    output = found.get("database")
    if not isinstance(output, Mapping):
        raise MigrationError(
            f"{stack.env} has no database on {stack.target.name} (its `database` output is null: "
            "enable_database is off there).",
            hint=f"Apply it with the database on (`labkit stack apply {stack.env} --var "
            "enable_database=true`), then migrate.",
        )
    return EnvironmentDatabase.from_output(stack.env, output)


def serving_release(outputs: Mapping[str, Any]) -> str:
    """The release of the color that serves all the traffic, from the ``deployment`` output."""
    layout = Layout.from_outputs(outputs.get("deployment") or {})
    if layout.serving is None:
        raise MigrationError(
            f"Traffic is split ({layout.describe()}): which release's migrations to run is not clear.",
            hint="Name it: --release VERSION.",
        )
    return layout.versions[layout.serving]


def run_migrations(
    target: Target,
    bucket: str,
    version: str,
    action: Action,
    database: EnvironmentDatabase | None,
    revision: str | None = None,
) -> str:
    """Run release ``version``'s ``python -m app.migrations ACTION [REVISION]`` against
    ``database`` and return what it printed. ``history`` and ``revision`` need no database
    (None); ``upgrade`` and ``expand`` without a revision go to the release's own. MigrationError
    when the release is not in ``bucket`` or the command fails (its error output in the message)."""
    if database is None and action not in _NO_DATABASE:
        raise ValueError(f"{action} needs a database")
    with tempfile.TemporaryDirectory(prefix=f"labkit-migrate-{version}-") as work:
        root = _fetch_release(target, bucket, version, Path(work))
        env = target.env()
        for key in _OVERRIDES:
            env.pop(key, None)
        if database is not None:
            env.update(database.app_settings())
        command = [sys.executable, "-m", "app.migrations", action, *([revision] if revision else [])]
        try:
            # cwd: ``python -m`` puts it first on sys.path, so the release's app package is the one run.
            done = subprocess.run(
                command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise MigrationError(
                f"Release {version}'s migrations ({action}) ran over {TIMEOUT_S:g} s.",
                hint="Look for a long lock on the database (another migrator, a long transaction).",
            ) from exc
    if done.returncode != 0:
        where = f" on {database.env}'s database {database.identifier}" if database else ""
        raise MigrationError(
            f"Release {version}'s migrations ({action}){where} failed (exit {done.returncode}):\n"
            f"{done.stderr.strip()[-2000:]}",
            hint="Read the error above; a connection refused or timing out means this machine cannot "
            "reach the database (on AWS it is inside the VPC), a revision error that the release does "
            "not ship that revision (`labkit db history ENV`).",
        )
    return done.stdout


def _fetch_release(target: Target, bucket: str, version: str, work: Path) -> Path:
    """Download release ``version``'s artifact from ``bucket`` and unpack it under ``work``."""
    from botocore.exceptions import ClientError

    artifact = work / ARTIFACT_NAME
    key = release_key(version)
    try:
        target.client("s3").download_file(bucket, key, str(artifact))
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchKey", "NoSuchBucket"):
            raise
        raise MigrationError(
            f"Release {version} is not published: s3://{bucket}/{key} does not exist.",
            hint="Publish it with `labkit release build VERSION` (`labkit release list` shows those "
            "published).",
        ) from None
    return unpack_release(artifact, work / "release")
