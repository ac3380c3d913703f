"""``python -m app.migrations upgrade [REVISION] | downgrade REVISION | current | history``.

Run from the artifact root with the app's DATABASE_* environment (app/database.py); ``upgrade``
without a revision goes to the one this release's release.json names.
"""

from __future__ import annotations

import os
import sys

from .. import default_release_file
from ..database import SecretCredentials, database_settings, make_engine
from ..release import load_release
from . import applied, current, downgrade, expand_revision, history, upgrade

USAGE = (
    "usage: python -m app.migrations upgrade [REVISION] | expand | downgrade REVISION | current | "
    "history | revision"
)
ACTIONS = ("upgrade", "expand", "downgrade", "current", "history", "revision")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ACTIONS or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    action = argv[0]
    if action == "history":
        for found in history():
            print(f"{found.revision}  (revises {found.down_revision or 'nothing'})  {found.doc}")
        return 0
    if action == "revision":
        print(load_release(default_release_file()).revision)
        return 0
    if action == "downgrade" and len(argv) < 2:
        print(f"downgrade needs a revision.\n{USAGE}", file=sys.stderr)
        return 2
    settings = database_settings(lambda key: os.environ.get(key, "").strip() or None)
    if settings is None:
        print("DATABASE_SECRET_ARN is not set: there is no database to migrate.", file=sys.stderr)
        return 2
    engine = make_engine(settings, SecretCredentials(settings))
    try:
        if action == "current":
            print(" ".join(current(engine)) or "none")
            return 0
        revision = argv[1] if len(argv) > 1 else load_release(default_release_file()).revision
        heads = current(engine)
        has, at = applied(heads), " ".join(heads) or "none"
        if action == "expand":
            # Twice, or after the contract step ran, there is nothing to do: said, not an error.
            wanted = expand_revision(revision)
            if wanted is None or wanted in has:
                print(f"at {at}: nothing to expand for {revision}")
                return 0
            upgrade(engine, wanted)
            print(f"expanded from {at} to {wanted}")
            return 0
        if action == "upgrade" and revision in has:
            print(f"at {at}: nothing to upgrade to {revision}")
            return 0
        if action == "downgrade" and revision != "base" and (revision == at or revision not in has):
            # A rollback's downgrade run again, or one to a revision the database never passed.
            print(f"at {at}: nothing to downgrade to {revision}")
            return 0
        (upgrade if action == "upgrade" else downgrade)(engine, revision)
        print(f"{action}d from {at} to {revision}")
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
