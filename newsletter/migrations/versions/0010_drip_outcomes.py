"""drip outcomes: the ledger tells the planner which enrollments to advance

The planner's *advance* pass used to find enrollments whose planned item reached its
final state by joining every waiting enrollment (``active``, ``next_due_at`` NULL) with
its ledger row, every minute: 9.6-20 s per pass with 300k-1M planned but unsent, however
few had been sent. Now a trigger on ``deliveries`` adds a row to ``drip_outcomes`` when a
drip ledger row is updated to ``sent``, ``failed``, ``unknown`` or ``skipped`` (by whatever
code path: dispatch, claim-time skips, lease recovery, withdrawals), in the same
transaction; drip rows are inserted ``queued`` (the planner's ``skipped`` rows for example
items are never waited on); the advance pass reads
that small queue and deletes what it handled. A queue, not a column on ``enrollments``:
the trigger never waits for an enrollment row another transaction holds (an unsubscribe
stopping it), so it adds no lock order to the ones the ledger writers already have.

Enrollments already waiting on a final ledger row are queued by the upgrade itself.

The planner's ``UPDATE`` of every planned enrollment paid for indexes no query needs any
more: ``ix_enrollments_due`` (``status, next_due_at``; readers of due rows use the partial
``ix_enrollments_active_due``) and ``ix_enrollments_subscriber_id`` (the prefix of
``uq_enrollments_subscriber_sequence``) are dropped, and ``ix_enrollments_active_due``
now leaves out the waiting rows (``next_due_at`` NULL): nothing reads them by that index
since the queue, so planning an enrollment deletes its entry and adds none.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FINAL = "('sent', 'failed', 'unknown', 'skipped')"
_QUEUE = "INSERT INTO drip_outcomes (enrollment_id, delivery_id) VALUES (NEW.enrollment_id, NEW.id)"
_DRIP_FINAL = f"NEW.kind = 'drip' AND NEW.enrollment_id IS NOT NULL AND NEW.status IN {FINAL}"


def upgrade() -> None:
    op.create_table(
        "drip_outcomes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column(
            "delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drip_outcomes")),
    )
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.drop_index("ix_enrollments_subscriber_id", table_name="enrollments")
    _active_due("status = 'active' AND next_due_at IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()
    op.execute(
        "INSERT INTO drip_outcomes (enrollment_id, delivery_id) "  # noqa: S608 - constant SQL
        "SELECT e.id, d.id FROM enrollments AS e JOIN deliveries AS d "
        "ON d.key = 'drip:' || e.id || ':' || e.last_item_id "
        f"WHERE e.status = 'active' AND e.next_due_at IS NULL AND d.status IN {FINAL} "
        "ORDER BY e.id"
    )


def _active_due(where: str) -> None:
    """(Re)create the planner's due-order index with the partial predicate ``where``."""
    op.drop_index("ix_enrollments_active_due", table_name="enrollments")
    op.create_index(
        "ix_enrollments_active_due",
        "enrollments",
        ["next_due_at", "id"],
        unique=False,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def _sqlite_triggers() -> None:
    op.execute(
        "CREATE TRIGGER tr_deliveries_drip_outcome_update AFTER UPDATE OF status ON deliveries "
        f"FOR EACH ROW WHEN {_DRIP_FINAL} AND OLD.status NOT IN {FINAL} BEGIN {_QUEUE}; END"
    )


def _postgres_triggers() -> None:
    op.execute(
        "CREATE FUNCTION drip_outcome_queue() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {_QUEUE}; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER tr_deliveries_drip_outcome_update AFTER UPDATE OF status ON deliveries "
        f"FOR EACH ROW WHEN ({_DRIP_FINAL} AND OLD.status NOT IN {FINAL}) "
        "EXECUTE FUNCTION drip_outcome_queue()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tr_deliveries_drip_outcome_update" + _on())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION drip_outcome_queue()")
    _active_due("status = 'active'")
    op.create_index("ix_enrollments_subscriber_id", "enrollments", ["subscriber_id"])
    op.create_index("ix_enrollments_due", "enrollments", ["status", "next_due_at"])
    op.drop_table("drip_outcomes")


def _on() -> str:
    return " ON deliveries" if op.get_bind().dialect.name == "postgresql" else ""
