"""due-order indexes: claims and drip batches walk an index instead of sorting the queue

``claim_batch`` reads ``status = 'queued' ... ORDER BY due_at, id LIMIT n`` and the drip
planner ``status = 'active' AND next_due_at <= now ORDER BY next_due_at, id LIMIT n``. The
indexes on ``(status, due_at)`` / ``(status, next_due_at)`` do not give that order on
PostgreSQL (``id`` is not in them), so every batch sorted the whole due set (2.6 s per
500-row claim with 856k queued). Partial indexes on exactly the ORDER BY, limited to the
rows those queries read, let each batch stop after ``n`` index entries.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_queued_due",
        "deliveries",
        ["due_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_enrollments_active_due",
        "enrollments",
        ["next_due_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("ix_enrollments_active_due", table_name="enrollments")
    op.drop_index("ix_deliveries_queued_due", table_name="deliveries")
