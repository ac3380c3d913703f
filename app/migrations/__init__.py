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
    python -m app.migrations downgrade 0001
    python -m app.migrations current
    python -m app.migrations history
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
