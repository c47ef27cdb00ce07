"""Act on newly stored events: move their recipients towards suppression, set-based.

The decisions are ``newsletter.events.policy``'s; this module only turns them into a
fixed number of statements per batch (not a handful per recipient):

* the recipients' rows are read once, locked on PostgreSQL (``FOR UPDATE``, in id order,
  so concurrent batches touching the same people queue instead of deadlocking: the
  soft-bounce count is read-modify-write);
* subscribers that change state are updated with one ``executemany`` per kind of change;
* their withdrawal and the suppression list are written by ``newsletter.withdrawals``,
  the same code the unsubscribe link and the CLI use (one statement per table).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from newsletter.events.parsing import ParsedEvent
from newsletter.events.policy import Effect, applies, effect_of, target_status
from newsletter.models import (
    Subscriber,
    SubscriberStatus,
)
from newsletter.withdrawals import Withdrawal, record_withdrawals, suppress_many

log = logging.getLogger(__name__)


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
            Withdrawal(d.recipient.id, d.target, f"sendgrid {d.names}")
            for d in decisions
            if d.target is not None and d.recipient is not None
        ],
        now=now,
    )
    suppress_many(
        session, {d.email: d.target.value for d in decisions if d.target is not None}, now=now
    )
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
