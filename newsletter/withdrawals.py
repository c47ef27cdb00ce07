"""Withdrawing subscribers and keeping the suppression list: one implementation for the
unsubscribe link, the CLI and SendGrid events (one subscriber or a whole batch).

A fixed number of statements whatever the number of subscribers; nothing here commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Row, Table, case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session

from newsletter.addresses import email_hash
from newsletter.bound_lists import unindexed
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    SubscriberStatus,
    Suppression,
)
from newsletter.webhooks.emit import sequences_ended, subscribers_changed

# How strong each suppression reason is; a reason not listed is never overwritten.
SUPPRESSION_SEVERITY = {
    "unsubscribed": 1,
    "forgotten": 1,
    "inactive": 1,
    "bounced": 2,
    "complained": 3,
}
# The same order for a subscriber's status: a withdrawal never moves one down.
STATUS_SEVERITY = {"pending": 0, "active": 0, **SUPPRESSION_SEVERITY}
_UNRANKED = 99


@dataclass(frozen=True)
class Withdrawal:
    """A subscriber whose status was just changed to ``status`` (unsubscribed, bounced,
    complained). ``delivery_id`` names the email whose unsubscribe link was used."""

    subscriber_id: int
    status: SubscriberStatus
    source: str
    ip: str | None = None
    delivery_id: int | None = None


def is_suppressed(session: Session, email: str) -> str | None:
    """The suppression reason for a normalised address, or None."""
    return session.scalar(
        select(Suppression.reason).where(Suppression.email_hash == email_hash(email))
    )


def record_withdrawals(
    session: Session, withdrawals: Sequence[Withdrawal], *, now: datetime
) -> None:
    """Everything a withdrawal records besides the subscriber's own row: a ``withdrawn``
    consent row each, their enrollments stopped, their queued deliveries skipped."""
    if not withdrawals:
        return
    session.execute(
        cast(Table, ConsentEvent.__table__).insert(),
        [
            {
                "subscriber_id": w.subscriber_id,
                "kind": ConsentKind.WITHDRAWN.value,
                "at": now,
                "ip": w.ip,
                "source": w.source,
                "delivery_id": w.delivery_id,
            }
            for w in withdrawals
        ],
    )
    ids = sorted(w.subscriber_id for w in withdrawals)
    stopped = session.execute(  # a finished (``done``) enrollment stays done
        update(Enrollment)
        .where(
            Enrollment.subscriber_id.in_(ids),
            Enrollment.status == EnrollmentStatus.ACTIVE.value,
        )
        .values(status=EnrollmentStatus.STOPPED.value, next_due_at=None)
        .returning(Enrollment.subscriber_id, Enrollment.sequence)
        .execution_options(synchronize_session=False)
    ).all()
    by_reason: dict[str, list[int]] = defaultdict(list)
    for w in withdrawals:
        by_reason[w.status.value].append(w.subscriber_id)
    _report_withdrawals(session, withdrawals, stopped, now=now)
    for reason, members in sorted(by_reason.items()):
        session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id.in_(sorted(members)),
                # by the subscribers' rows, not every queued row (SQLite, no statistics)
                unindexed(session, Delivery.status) == DeliveryStatus.QUEUED.value,
            )
            .values(
                status=DeliveryStatus.SKIPPED.value, error=f"subscriber {reason}", updated_at=now
            )
            .execution_options(synchronize_session=False)
        )


def suppress_many(session: Session, reasons: Mapping[str, str], *, now: datetime) -> None:
    """Put each address (normalised email -> reason) on the suppression list, or raise its
    reason to a stronger one; never lower it.

    One upsert, rows in hash order (one lock order for concurrent batches); two batches
    suppressing the same address at once cannot collide on the unique hash.
    """
    if not reasons:
        return
    hashed = sorted((email_hash(email), reason) for email, reason in reasons.items())
    rows = [{"email_hash": h, "reason": reason, "created_at": now} for h, reason in hashed]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Suppression)
    statement = statement.on_conflict_do_update(
        index_elements=["email_hash"],
        set_={"reason": statement.excluded.reason},
        where=_rank(Suppression.reason) < _rank(statement.excluded.reason),
    )
    # A list of parameter sets: SQLAlchemy sends them as one multi-row statement, in order,
    # and compiles the statement once for every batch.
    session.execute(statement, rows)


def _rank(reason: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[int]:
    return case(SUPPRESSION_SEVERITY, value=reason, else_=_UNRANKED)


def _report_withdrawals(
    session: Session,
    withdrawals: Sequence[Withdrawal],
    stopped: Sequence[Row[int, str]],
    *,
    now: datetime,
) -> None:
    """Webhook events: ``subscriber.<status>`` each, ``sequence.exited`` per stopped
    enrollment (reason: the new status)."""
    status_of = {w.subscriber_id: w.status.value for w in withdrawals}
    for status in sorted(set(status_of.values())):
        members = [w for w in withdrawals if w.status.value == status]
        subscribers_changed(
            session,
            f"subscriber.{status}",
            [w.subscriber_id for w in members],
            now=now,
            extra={w.subscriber_id: {"source": w.source} for w in members},
        )
        exits = [(s, name) for s, name in stopped if status_of.get(s) == status]
        sequences_ended(session, "sequence.exited", exits, now=now, reason=status)
