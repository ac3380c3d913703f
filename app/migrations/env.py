"""Alembic's environment: run on the connection that :mod:`app.migrations` passes in.

Every upgrade or downgrade is one transaction (PostgreSQL's DDL is transactional), so a failed
step leaves the schema as it was; an advisory lock makes a second migrator wait instead of racing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

#: Any fixed number: the key of the advisory lock that migrators take.
LOCK_KEY = 15_000_001

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Run the migrations through app.migrations (upgrade/downgrade, or `python -m app.migrations`), "
        "which passes the connection: the database's credentials are in its secret, not in a URL."
    )
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    context.run_migrations()
