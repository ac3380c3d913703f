"""The app's schema migrations (Alembic), runnable from code and from the command line.

Revisions are in ``versions/``: one per release that changes the schema, named by a four-digit
step (``0001``, ``0002``, ...), plus ``0002_onestep``, the ``migration=one_step`` fault's
(app/release.py lists them in ``SCHEMAS``). A release's manifest names the revision its code
runs on (``Release.revision``); migrate the database there before that release takes traffic::

    from app.migrations import upgrade
    upgrade(engine, "0002")

or, from the artifact root with the app's DATABASE_* environment (the secret gives the
credentials, as to the app)::

    python -m app.migrations upgrade            # to this release's revision
    python -m app.migrations expand             # the same, short of its contract revisions
    python -m app.migrations downgrade 0001
    python -m app.migrations current
    python -m app.migrations history
    python -m app.migrations revision           # this release's revision (no database needed)

A revision that removes what older code still uses (a contract step, such as ``0003``) says so
with ``phase = "contract"`` at the top of its file. A deployment expands before the new release
takes traffic and contracts only once no older color serves (labkit.deploy.controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

FOLDER = Path(__file__).resolve().parent


#: The ``phase`` of a revision that older code cannot run against; every other revision expands.
CONTRACT = "contract"


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    doc: str


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    config.attributes["connection"] = connection  # env.py runs on it
    return config


def upgrade(engine: Engine, revision: str) -> None:
    """Migrate the database up to ``revision``, in one transaction."""
    with engine.begin() as connection:  # the cookbook's way to share a connection with Alembic
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base``: no schema at all), in one transaction."""
    with engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def current(engine: Engine) -> tuple[str, ...]:
    """The revision(s) the database is at; () before the first upgrade."""
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def history() -> list[Revision]:
    """Every revision, each after the one it revises."""
    script = ScriptDirectory.from_config(_config())
    found = [
        Revision(
            str(r.revision),
            None if r.down_revision is None else str(r.down_revision),
            " ".join((r.doc or "").split()),
        )
        for r in script.walk_revisions()
    ]
    return found[::-1]


def expand_revision(revision: str) -> str | None:
    """``revision``, or the newest revision below it that is not a contract step: what a deploy
    migrates to before the release takes traffic. None when every revision up to it contracts."""
    script = ScriptDirectory.from_config(_config())
    found: str | None = revision
    while found is not None:
        step = script.get_revision(found)
        if step is None:
            return None
        if getattr(step.module, "phase", "expand") != CONTRACT:
            return found
        below = step.down_revision
        found = below if isinstance(below, str) or below is None else str(below[0])
    return None


def applied(heads: tuple[str, ...]) -> set[str]:
    """The revisions a database at ``heads`` (:func:`current`) has: those and every one below."""
    if not heads:
        return set()
    script = ScriptDirectory.from_config(_config())
    return {str(step.revision) for head in heads for step in script.iterate_revisions(head, "base")}
