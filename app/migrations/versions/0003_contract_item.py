"""Schema 0003, contract: orders.item dropped; product is the one column.

The rename's second half. Run it only once no code on 0001 or 0002 runs: both write item.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
#: Code on 0002 still writes item: a deploy runs this only once no older color serves.
phase = "contract"


def upgrade() -> None:
    op.execute("DROP TRIGGER orders_item_product_in_step ON orders")
    op.execute("DROP FUNCTION orders_item_product_in_step()")
    op.execute("UPDATE orders SET product = item WHERE product IS NULL")
    op.execute("ALTER TABLE orders ALTER COLUMN product SET NOT NULL")
    op.execute("ALTER TABLE orders DROP COLUMN item")


def downgrade() -> None:
    op.execute("ALTER TABLE orders ADD COLUMN item text")
    op.execute("UPDATE orders SET item = product")
    op.execute("ALTER TABLE orders ALTER COLUMN product DROP NOT NULL")
    # 0002's trigger as 0002 wrote it: a revision stays as it was released, so it repeats the
    # statement instead of importing it from a file that could change.
    op.execute(
        """
        CREATE FUNCTION orders_item_product_in_step() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.product := COALESCE(NEW.product, NEW.item);
            NEW.item := COALESCE(NEW.item, NEW.product);
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER orders_item_product_in_step BEFORE INSERT OR UPDATE ON orders "
        "FOR EACH ROW EXECUTE FUNCTION orders_item_product_in_step()"
    )
