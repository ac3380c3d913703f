"""Schema 0002, expand: orders.product beside orders.item, the same value in both.

The rename of item to product, first half. Code on 0001 still runs against this shape: it
writes item only, and the trigger copies it into product; code on 0002 writes both and reads
product, falling back to item. item loses NOT NULL so that code on 0003 (product only) can
write here too before the contract step drops item.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders ADD COLUMN product text")
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
    op.execute("UPDATE orders SET product = item WHERE product IS NULL")
    op.execute("ALTER TABLE orders ALTER COLUMN item DROP NOT NULL")


def downgrade() -> None:
    op.execute("DROP TRIGGER orders_item_product_in_step ON orders")
    op.execute("DROP FUNCTION orders_item_product_in_step()")
    op.execute("UPDATE orders SET item = product WHERE item IS NULL")
    op.execute("ALTER TABLE orders ALTER COLUMN item SET NOT NULL")
    op.execute("ALTER TABLE orders DROP COLUMN product")
