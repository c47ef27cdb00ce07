"""engagement events, tracked links, bounce reports, sunset notice

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newsletter.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = newsletter.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "engagement_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("delivery_id", BIG_ID, nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("human", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("link_index", sa.Integer(), nullable=True),
        sa.Column("source_key", sa.String(length=64), nullable=True),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_engagement_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_events")),
        sa.UniqueConstraint("source_key", name=op.f("uq_engagement_events_source_key")),
    )
    with op.batch_alter_table("engagement_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_engagement_events_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_engagement_events_kind"), ["kind"], unique=False)
        batch_op.create_index(
            "ix_engagement_events_subscriber_at", ["subscriber_id", "at"], unique=False
        )
    op.create_table(
        "delivery_links",
        sa.Column("delivery_id", BIG_ID, nullable=False),
        sa.Column("link_index", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", "link_index", name=op.f("pk_delivery_links")),
    )
    op.create_table(
        "bounce_reports",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("report_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", BIG_ID, nullable=True),
        sa.Column("email_hash", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_reports")),
        sa.UniqueConstraint("report_key", name=op.f("uq_bounce_reports_report_key")),
    )
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sunset_notice_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("sunset_notice_at")
    op.drop_table("bounce_reports")
    op.drop_table("delivery_links")
    with op.batch_alter_table("engagement_events", schema=None) as batch_op:
        batch_op.drop_index("ix_engagement_events_subscriber_at")
        batch_op.drop_index(batch_op.f("ix_engagement_events_kind"))
        batch_op.drop_index(batch_op.f("ix_engagement_events_delivery_id"))
    op.drop_table("engagement_events")
