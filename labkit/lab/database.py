"""Lesson 12's steps: staging with its database, a column rename deployed three ways under a read
probe and a write probe, and what each deploy did to requests and writes.

The rename is ``orders.item`` to ``orders.product`` (app/migrations/): the release
``1.1.0-onestep`` does it in one ALTER (the fault ``migration=one_step``), which the old color's
code cannot run against; ``1.1.0`` expands (``product`` beside ``item``, kept in step by a
trigger) and ``1.2.0`` contracts (drops ``item``) once no color runs code that writes it. The
controller runs each release's migrations (:mod:`labkit.deploy.controller`); bench/db_deploy.py
runs these same steps and prints their figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from labkit.deploy.controller import Controller
from labkit.deploy.ledger import Deployment
from labkit.deploy.migrations import environment_database, run_migrations, serving_release
from labkit.deploy.probe import Probe
from labkit.deploy.strategy import canary
from labkit.deploy.writeprobe import WriteCheck, WriteProbe
from labkit.infra.stack import Stack
from labkit.lab.lesson import ensure_staging
from labkit.release.build import build_release, release_exists, upload_release
from labkit.target import Target

#: The lesson's releases: version -> (schema revision, faults).
RELEASES: dict[str, tuple[str, dict[str, str]]] = {
    "1.0.0": ("0001", {}),
    "1.1.0-onestep": ("0002", {"migration": "one_step"}),
    "1.1.0": ("0002", {}),
    "1.2.0": ("0003", {}),
}
#: staging as the lesson starts it: blue serves 1.0.0 on one instance, on the database.
STAGING_ON_DATABASE = {
    "blue_version": "1.0.0",
    "green_version": "1.0.0",
    "blue_capacity": 1,
    "green_capacity": 0,
    "green_weight": 0,
    "enable_database": True,
}


def build_staging_with_database(target: Target, *, say: Callable[[str], None] = print) -> Controller:
    """global, the lesson's releases in the artifact bucket, and staging with its database and
    blue serving 1.0.0 on schema 0001 (release 1.0.0's own migrations, as `labkit db migrate
    staging` runs them); returns staging's deploy controller, which says its lines to ``say``.

    On a staging an earlier run left (``teardown=False``), the database first goes back to 1.0.0's
    revision, by the serving release's code, since blue goes back to 1.0.0."""
    global_stack = Stack("global", target)
    if global_stack.outputs():  # {} before global's first apply: nothing to go back from
        _schema_back_to_first_release(target, say)
    ensure_staging(target, say=say, staging=STAGING_ON_DATABASE)
    bucket = global_stack.names.artifact_bucket
    for version, (schema, faults) in RELEASES.items():
        if not release_exists(target, bucket, version):
            say(f"building and uploading release {version} (schema {schema}) ...")
            upload_release(target, bucket, build_release(version, faults or None, schema=schema), version)
    controller = Controller("staging", target, say=say)
    say(run_migrations(target, bucket, "1.0.0", "upgrade", environment_database(controller.stack)).strip())
    return controller


def _schema_back_to_first_release(target: Target, say: Callable[[str], None]) -> None:
    """If staging has its database and serves a later release than 1.0.0, downgrade the database to
    1.0.0's revision with that release's code (the newer release ships the downgrade), as a
    rollback does: 1.0.0's code fails on a later schema."""
    stack = Stack("staging", target)
    outputs = stack.outputs()
    if not isinstance(outputs.get("database"), dict):
        return
    serving = serving_release(outputs)
    if serving == "1.0.0":
        return
    bucket = stack.names.artifact_bucket
    first = run_migrations(target, bucket, "1.0.0", "revision", None).strip()
    say(f"staging serves {serving} from an earlier run: its database goes back to {first} first")
    database = environment_database(stack, outputs)
    say(run_migrations(target, bucket, serving, "downgrade", database, first).strip())


def revision(controller: Controller) -> str:
    """The database's schema revision now, as `labkit db current staging` prints it (the serving
    release's ``python -m app.migrations current``)."""
    stack = controller.stack
    outputs = stack.outputs()
    database = environment_database(stack, outputs)
    return run_migrations(
        stack.target, stack.names.artifact_bucket, serving_release(outputs), "current", database
    ).strip()


@dataclass(frozen=True)
class DeployRun:
    """One deploy under the two probes: its record, both probes' answers and the write check."""

    version: str
    record: Deployment
    reads: pd.DataFrame
    writes: pd.DataFrame
    #: The write probe's marks (the controller's phases as it moved): the weights plotted.
    marks: list[tuple[float, str]]
    check: WriteCheck
    revision: str
    wall_s: float

    @property
    def failed_reads(self) -> int:
        return int((~self.reads["ok"]).sum())

    def summary(self) -> dict[str, object]:
        return {
            "release": self.version,
            "status": self.record.status,
            "seconds": round(self.wall_s, 1),
            "reads": len(self.reads),
            "reads failed": self.failed_reads,
            "writes": self.check.sent,
            "writes failed": self.check.failed,
            "writes lost": len(self.check.lost),
            "schema after": self.revision,
        }


def deploy_under_probes(controller: Controller, version: str, *, rate: float, writes: float) -> DeployRun:
    """Deploy ``version`` (canary 10/50/100, 5 s bakes) with the read probe (``GET /``) at ``rate``
    and the write probe (``POST /orders``) at ``writes`` through the load balancer the whole time;
    the write probe is the deploy's probe, whose answers the gate judges. Every acknowledged
    write is read back afterwards."""
    url = controller.alb_url()
    reads, written = Probe(url, rate=rate), WriteProbe(url, rate=writes)
    reads.start()
    written.start()
    started = time.monotonic()
    try:
        record = controller.deploy(version, strategy=canary(), probe=written)
        wall = time.monotonic() - started
        time.sleep(2)  # the answers due after the last move
    finally:
        reads.stop()
        written.stop()
    check = written.verify()
    return DeployRun(
        version=version,
        record=record,
        reads=reads.results(),
        writes=written.results(),
        marks=written.marks,
        check=check,
        revision=revision(controller),
        wall_s=wall,
    )


def runs_table(runs: list[DeployRun]) -> pd.DataFrame:
    """A row per deploy: its outcome, the reads and writes failed, the writes lost, the schema."""
    return pd.DataFrame([run.summary() for run in runs]).set_index("release")


def failed_writes(run: DeployRun) -> pd.DataFrame:
    """The deploy's failed writes by the color and release that answered them (a failure with no
    answer names neither) and the deploy phase they were sent in."""
    failed = run.writes[~run.writes["ok"]]
    grouped = failed.fillna({"color": "-", "version": "-"}).groupby(["color", "version", "phase"]).size()
    return grouped.rename("failed writes").reset_index()


def migration_phases(controller: Controller, run: DeployRun) -> pd.DataFrame:
    """The deploy's migration phases from the ledger: what each did, and how long it took."""
    rows = [
        {"phase": e.phase, "seconds": round(e.duration_s or 0.0, 2), "what": e.detail}
        for e in controller.ledger.events(run.record.id)
        if "migrate" in e.phase
    ]
    return pd.DataFrame(rows, columns=["phase", "seconds", "what"])
