"""attention: marketing cap deferrals, campaign priority and topic, subscriber preferences

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newsletter.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="2"))
        batch.add_column(sa.Column("topic", sa.String(length=100), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("deferred_from", newsletter.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "delivery_deferrals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("delivery_id", _ID, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("at", newsletter.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", newsletter.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_deferrals_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_delivery_deferrals_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_deferrals")),
    )
    op.create_index(
        op.f("ix_delivery_deferrals_delivery_id"), "delivery_deferrals", ["delivery_id"]
    )
    op.create_index(
        op.f("ix_delivery_deferrals_subscriber_id"), "delivery_deferrals", ["subscriber_id"]
    )
    op.create_table(
        "subscriber_preferences",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("topics_off", sa.JSON(), nullable=False),
        sa.Column("frequency", sa.String(length=32), nullable=False),
        sa.Column("updated_at", newsletter.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_preferences_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_subscriber_preferences")),
    )


def downgrade() -> None:
    op.drop_table("subscriber_preferences")
    op.drop_index(op.f("ix_delivery_deferrals_subscriber_id"), table_name="delivery_deferrals")
    op.drop_index(op.f("ix_delivery_deferrals_delivery_id"), table_name="delivery_deferrals")
    op.drop_table("delivery_deferrals")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("deferred_from")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("topic")
        batch.drop_column("priority")
