"""event inbox: the SendGrid webhook stores each verified body and answers; a drain applies it

``POST /webhooks/sendgrid`` used to parse, store, suppress and reconcile 1,000 events
inside the request (~150 ms on SQLite). Now the request verifies the signature, checks
that the body is a JSON array, stores the raw body as one ``event_inbox`` row and commits
(durable before the answer); a drain (a thread of the web process, and the ``events`` job
of the worker) parses it and applies the events, marking the row ``applied_at`` in the
same transaction as the effects. A body the drain cannot apply keeps its ``problem`` and
is skipped. ``ix_event_inbox_pending`` holds only rows still to apply. On PostgreSQL the
body is stored out of line uncompressed (``STORAGE EXTERNAL``): compressing 300 KB in the
request cost server CPU, and an applied body is emptied anyway.

``ix_provider_events_event`` is dropped: the only reader filters with ``NOT IN`` (stats),
which no plan serves from that index, and every stored event paid for it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newsletter.models

UTC = newsletter.models.UTCDateTime(timezone=True)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PENDING = "applied_at IS NULL AND problem IS NULL"


def upgrade() -> None:
    op.create_table(
        "event_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("applied_at", UTC, nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_inbox")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE event_inbox ALTER COLUMN body SET STORAGE EXTERNAL")
    op.create_index(
        "ix_event_inbox_pending",
        "event_inbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.drop_index("ix_provider_events_event", table_name="provider_events")


def downgrade() -> None:
    op.create_index("ix_provider_events_event", "provider_events", ["event"], unique=False)
    op.drop_index("ix_event_inbox_pending", table_name="event_inbox")
    op.drop_table("event_inbox")
