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
from . import current, downgrade, history, upgrade

USAGE = "usage: python -m app.migrations upgrade [REVISION] | downgrade REVISION | current | history"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("upgrade", "downgrade", "current", "history") or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    action = argv[0]
    if action == "history":
        for found in history():
            print(f"{found.revision}  (revises {found.down_revision or 'nothing'})  {found.doc}")
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
        (upgrade if action == "upgrade" else downgrade)(engine, revision)
        print(f"{action}d to {revision}")
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
