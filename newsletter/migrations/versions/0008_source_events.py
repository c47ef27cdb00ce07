"""form sources: seen event ids, and the sender's event id on the consent record

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newsletter.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("received_at", newsletter.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_source_events_source")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_event_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_column("source_event_id")
    op.drop_table("source_events")
