"""Act on newly stored events: move their recipients towards suppression, set-based.

The decisions are ``newsletter.events.policy``'s; this module only turns them into a
fixed number of statements per batch (not a handful per recipient):

* the recipients' rows are read once, locked on PostgreSQL (``FOR UPDATE``, in id order,
  so concurrent batches touching the same people queue instead of deadlocking: the
  soft-bounce count is read-modify-write);
* subscribers that change state are updated with one ``executemany`` per kind of change;
* their withdrawal is recorded as ``subscriptions.withdraw`` records it (consent row,
  enrollments stopped, queued deliveries skipped), in one statement per table;
* the suppression list gets one ``INSERT ... ON CONFLICT (email_hash) DO UPDATE``, rows
  in hash order, raising a weaker reason to the stronger one and never lowering it.

``tests/test_events_suppression.py`` checks that the withdrawal here leaves the same rows
as ``subscriptions.withdraw``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session

from newsletter.addresses import email_hash
from newsletter.events.parsing import ParsedEvent
from newsletter.events.policy import Effect, applies, effect_of, target_status
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)

log = logging.getLogger(__name__)

# How strong each suppression reason is; a reason not listed is never overwritten.
SUPPRESSION_SEVERITY = {"unsubscribed": 1, "forgotten": 1, "bounced": 2, "complained": 3}
_UNRANKED = 99


@dataclass(frozen=True)
class Recipient:
    """The part of a subscriber row the act step reads."""

    id: int
    status: SubscriberStatus
    confirmed_at: datetime | None
    soft_bounces: int


@dataclass(frozen=True)
class Decision:
    """What one address's new events do. ``soft_bounces`` is the new total, if it changed."""

    email: str
    recipient: Recipient | None
    soft_bounces: int | None
    target: SubscriberStatus | None
    names: str  # the event names, for the consent record's source


def decide(email: str, events: Sequence[ParsedEvent], recipient: Recipient | None) -> Decision:
    """Pure: the policy applied to one address's new events and its current row."""
    confirmed_at = recipient.confirmed_at if recipient is not None else None
    effects = [
        effect
        for effect, event in ((effect_of(e), e) for e in events)
        if applies(effect, occurred_at=event.occurred_at, confirmed_at=confirmed_at)
    ]
    soft = sum(1 for e in effects if e is Effect.SOFT_BOUNCE)
    total = recipient.soft_bounces + soft if recipient is not None else 0
    current = recipient.status if recipient is not None else None
    return Decision(
        email=email,
        recipient=recipient,
        soft_bounces=total if recipient is not None and soft else None,
        target=target_status(current, effects, soft_bounces=total),
        names=",".join(sorted({e.event for e in events})),
    )


def apply_suppressions(session: Session, events: Iterable[ParsedEvent], *, now: datetime) -> int:
    """Move recipients towards suppression; return how many changed state. No commit."""
    by_email: dict[str, list[ParsedEvent]] = defaultdict(list)
    for event in events:
        if event.email and effect_of(event) is not Effect.NONE:
            by_email[event.email].append(event)
    if not by_email:
        return 0
    recipients = _lock_recipients(session, list(by_email))
    decisions = [decide(e, by_email[e], recipients.get(e)) for e in sorted(by_email)]
    _update_subscribers(session, decisions, now=now)
    record_withdrawals(
        session,
        [
            (d.recipient.id, d.target, f"sendgrid {d.names}")
            for d in decisions
            if d.target is not None and d.recipient is not None
        ],
        now=now,
    )
    suppress_many(session, {d.email: d.target for d in decisions if d.target is not None}, now=now)
    changed = Counter(d.target.value for d in decisions if d.target is not None)
    if changed:
        log.info("sendgrid events: recipients now %s", dict(sorted(changed.items())))
    return sum(changed.values())


def _lock_recipients(session: Session, emails: list[str]) -> dict[str, Recipient]:
    statement = (
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.status,
            Subscriber.confirmed_at,
            Subscriber.soft_bounces,
        )
        .where(Subscriber.email.in_(emails))
        .order_by(Subscriber.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()  # SQLite: BEGIN IMMEDIATE already serialises
    return {
        row.email: Recipient(
            row.id, SubscriberStatus(row.status), row.confirmed_at, row.soft_bounces or 0
        )
        for row in session.execute(statement)
    }


def _update_subscribers(session: Session, decisions: Sequence[Decision], *, now: datetime) -> None:
    withdrawn: list[dict[str, Any]] = []
    counted: list[dict[str, Any]] = []
    for d in sorted(decisions, key=lambda d: d.recipient.id if d.recipient else 0):
        if d.recipient is None:
            continue
        soft = d.recipient.soft_bounces if d.soft_bounces is None else d.soft_bounces
        if d.target is not None:
            withdrawn.append({"b_id": d.recipient.id, "b_status": d.target.value, "b_soft": soft})
        elif d.soft_bounces is not None:
            counted.append({"b_id": d.recipient.id, "b_soft": soft})
    table = cast(Table, Subscriber.__table__)
    if withdrawn:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                soft_bounces=bindparam("b_soft"),
                unsubscribed_at=now,
                updated_at=now,
            ),
            withdrawn,
        )
    if counted:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(soft_bounces=bindparam("b_soft"), updated_at=now),
            counted,
        )


def record_withdrawals(
    session: Session,
    withdrawals: Sequence[tuple[int, SubscriberStatus, str]],
    *,
    now: datetime,
) -> None:
    """What ``subscriptions.withdraw`` records besides the status and the suppression.

    ``withdrawals`` holds (subscriber id, new status, source) for subscribers whose status
    was just changed: a ``withdrawn`` consent row each, enrollments stopped, queued
    deliveries skipped. A fixed number of statements for any number of subscribers.
    """
    if not withdrawals:
        return
    session.execute(
        cast(Table, ConsentEvent.__table__).insert(),
        [
            {
                "subscriber_id": subscriber_id,
                "kind": ConsentKind.WITHDRAWN.value,
                "at": now,
                "ip": None,
                "source": source,
            }
            for subscriber_id, _, source in withdrawals
        ],
    )
    ids = sorted(subscriber_id for subscriber_id, _, _ in withdrawals)
    session.execute(
        update(Enrollment)
        .where(Enrollment.subscriber_id.in_(ids))
        .values(status=EnrollmentStatus.STOPPED.value, next_due_at=None)
        .execution_options(synchronize_session=False)
    )
    by_reason: dict[str, list[int]] = defaultdict(list)
    for subscriber_id, status, _ in withdrawals:
        by_reason[status.value].append(subscriber_id)
    for reason, members in sorted(by_reason.items()):
        session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id.in_(sorted(members)),
                Delivery.status == DeliveryStatus.QUEUED.value,
            )
            .values(
                status=DeliveryStatus.SKIPPED.value, error=f"subscriber {reason}", updated_at=now
            )
            .execution_options(synchronize_session=False)
        )


def suppress_many(session: Session, targets: dict[str, SubscriberStatus], *, now: datetime) -> None:
    """Put each address on the suppression list, or raise its reason to the stronger one.

    One upsert, rows in hash order (one lock order for concurrent batches); two batches
    suppressing the same address at once cannot collide on the unique hash.
    """
    if not targets:
        return
    rows = sorted(
        (
            {"email_hash": email_hash(email), "reason": status.value, "created_at": now}
            for email, status in targets.items()
        ),
        key=lambda row: row["email_hash"],
    )
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
