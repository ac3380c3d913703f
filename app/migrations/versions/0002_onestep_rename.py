"""Schema 0002_onestep, the ``migration=one_step`` fault: orders.item renamed to product in one
ALTER, instead of 0002 then 0003.

Not backward compatible on purpose (for the lessons): code on 0001, still serving in the old
color during a canary, inserts into and selects item, which no longer exists, so its order
requests fail until the rename is rolled back (downgrade to 0001).
"""

from __future__ import annotations

from alembic import op

revision = "0002_onestep"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders RENAME COLUMN item TO product")


def downgrade() -> None:
    op.execute("ALTER TABLE orders RENAME COLUMN product TO item")
