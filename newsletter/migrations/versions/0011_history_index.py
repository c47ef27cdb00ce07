"""history index: the planner reads a subscriber's items from the index alone

Every plan batch looks up, for each due enrollment, the items its subscriber already had
(``subscriber_id = ? AND kind IN ('drip', 'campaign') AND item_id IN (...)``). The index on
``(subscriber_id, item_id)`` found the rows but not their ``kind``, so each lookup read
every one of the subscriber's ledger rows from the table as well (PostgreSQL: two heap
fetches per enrollment in the bench; SQLite: most of the batch read). The index becomes
``(subscriber_id, item_id, kind)``: the same prefix for every query that used it, and the
history lookup is answered from the index (an index-only scan; a covering index on
SQLite). One index replaces the other, so writes to the ledger maintain as many as before.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_subscriber_item_kind",
        "deliveries",
        ["subscriber_id", "item_id", "kind"],
        unique=False,
    )
    op.drop_index("ix_deliveries_subscriber_item", table_name="deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_deliveries_subscriber_item", "deliveries", ["subscriber_id", "item_id"], unique=False
    )
    op.drop_index("ix_deliveries_subscriber_item_kind", table_name="deliveries")
