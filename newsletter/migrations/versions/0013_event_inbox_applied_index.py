"""event inbox: index on ``applied_at``, for pruning old bodies and for ``forget``

The ``events`` job deletes applied bodies older than ``EVENT_INBOX_APPLIED_DAYS`` and
bodies kept with a problem older than ``EVENT_INBOX_PROBLEM_DAYS``, a bounded batch at a
time; ``forget`` reads every body not applied (pending or kept). Without an index each of
these scans the whole table, one row per webhook post ever received. ``applied_at`` in
a B-tree serves both: a range below the cut-off for applied rows, and ``IS NULL`` (both
databases index NULLs) for the few not applied.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_inbox_applied_at", "event_inbox", ["applied_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_event_inbox_applied_at", table_name="event_inbox")
