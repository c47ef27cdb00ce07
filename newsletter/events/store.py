"""Store a batch of SendGrid events once, then act on the new ones. One transaction.

* Storing is ``INSERT ... ON CONFLICT DO NOTHING`` over both unique keys (``sg_event_id``
  and ``logical_key``): SendGrid's retries, duplicates with a fresh ``sg_event_id`` and
  concurrent posts of the same batch store each logical event once, on PostgreSQL and
  on SQLite. Only the rows this insert created are acted on, so every event has exactly
  one effect however often it arrives.
* Suppression follows ``newsletter.events.policy``; an address with no subscriber row
  (forgotten, or a seed address of a test send) is suppressed by hash all the same.
* Reconciliation: any event that names a delivery proves SendGrid accepted that message,
  so a delivery still ``unknown``, ``sending``, ``queued`` (waiting for a retry) or
  ``failed`` becomes ``sent``, keeping the provider's message id and the earliest event
  time as ``sent_at``; it is never sent again. ``leased`` rows are left to their worker.
  Reconciling is idempotent, so it runs for duplicate events too: a retried batch can
  still settle a row that went ``unknown`` after the first copy was stored.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.db import transaction
from newsletter.events.parsing import ParsedBatch, ParsedEvent
from newsletter.events.policy import SEVERITY, Effect, applies, effect_of, target_status
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscriptions import withdraw

log = logging.getLogger(__name__)

RECONCILABLE = (
    DeliveryStatus.UNKNOWN.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.QUEUED.value,
    DeliveryStatus.FAILED.value,
)
_SQLITE_WRITER = threading.Lock()
SUPPRESSION_SEVERITY = {"unsubscribed": 1, "forgotten": 1, "bounced": 2, "complained": 3}


@dataclass(frozen=True)
class IngestReport:
    received: int  # events in the body
    stored: int  # new rows
    duplicates: int  # already stored (same sg_event_id or logical key)
    ignored: int  # unusable elements
    reconciled: int  # deliveries settled as sent
    suppressed: int  # subscribers or addresses moved towards suppression

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "reconciled": self.reconciled,
            "suppressed": self.suppressed,
        }


def ingest(app: App, batch: ParsedBatch, *, now: datetime) -> IngestReport:
    """Store and act on one webhook batch; committed when this returns.

    On SQLite (one writer at a time) concurrent batches of this process queue on a lock
    instead of SQLite's sleep-and-poll busy handler, which lets late arrivals overtake and
    starves some requests for seconds under load.
    """
    queue = _SQLITE_WRITER if app.engine.dialect.name == "sqlite" else nullcontext()
    with queue, transaction(app.sessions) as session:
        report = store_events(session, batch.events, now=now)
    for reason in batch.ignored[:10]:
        log.warning("sendgrid webhook: ignored %s", reason)
    return IngestReport(
        received=report.received + len(batch.ignored),
        stored=report.stored,
        duplicates=report.duplicates,
        ignored=len(batch.ignored),
        reconciled=report.reconciled,
        suppressed=report.suppressed,
    )


def store_events(session: Session, events: Sequence[ParsedEvent], *, now: datetime) -> IngestReport:
    """Insert new events, act on them, reconcile deliveries. Does not commit."""
    unique = _unique(events)
    new = _insert(session, unique, now=now)
    reconciled = reconcile(session, unique, now=now)
    suppressed = apply_suppressions(session, new, now=now)
    return IngestReport(
        received=len(events),
        stored=len(new),
        duplicates=len(events) - len(new),
        ignored=0,
        reconciled=reconciled,
        suppressed=suppressed,
    )


def _unique(events: Iterable[ParsedEvent]) -> list[ParsedEvent]:
    """Drop repeats inside one batch (same logical key or same ``sg_event_id``)."""
    keys: set[str] = set()
    ids: set[str] = set()
    kept: list[ParsedEvent] = []
    for event in events:
        if event.logical_key in keys or (event.sg_event_id and event.sg_event_id in ids):
            continue
        keys.add(event.logical_key)
        if event.sg_event_id:
            ids.add(event.sg_event_id)
        kept.append(event)
    return kept


def _insert(session: Session, events: Sequence[ParsedEvent], *, now: datetime) -> list[ParsedEvent]:
    """Insert if new on either unique key; return the events whose rows were created."""
    if not events:
        return []
    rows = [
        {
            "sg_event_id": e.sg_event_id,
            "logical_key": e.logical_key,
            "event": e.event,
            "email_hash": e.email_hash,
            "occurred_at": e.occurred_at,
            "delivery_id": e.delivery_id,
            "sg_message_id": e.sg_message_id,
            "payload": dict(e.payload),
            "received_at": now,
        }
        for e in sorted(events, key=lambda e: e.logical_key)  # one lock order for all
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(ProviderEvent).on_conflict_do_nothing().returning(ProviderEvent.logical_key)
    created = set(session.scalars(statement, rows))
    return [e for e in events if e.logical_key in created]


def reconcile(session: Session, events: Iterable[ParsedEvent], *, now: datetime) -> int:
    """Settle deliveries named by these events as ``sent``; return how many changed."""
    first_seen: dict[int, ParsedEvent] = {}
    for event in events:
        if event.delivery_id is None:
            continue
        seen = first_seen.get(event.delivery_id)
        if seen is None or event.occurred_at < seen.occurred_at:
            first_seen[event.delivery_id] = event
    if not first_seen:
        return 0
    open_ids = sorted(  # updated in id order: no deadlock between concurrent batches
        session.scalars(
            select(Delivery.id).where(
                Delivery.id.in_(list(first_seen)), Delivery.status.in_(RECONCILABLE)
            )
        )
    )
    if not open_ids:
        return 0
    table = cast(Table, Delivery.__table__)
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            # plain comparisons: an expanding IN cannot be used with executemany
            or_(*(table.c.status == status for status in RECONCILABLE)),
        )
        .values(
            status=DeliveryStatus.SENT.value,
            provider_message_id=func.coalesce(table.c.provider_message_id, bindparam("b_msg")),
            sent_at=func.coalesce(table.c.sent_at, bindparam("b_at")),
            error=literal("reconciled from SendGrid events; was ") + table.c.status,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    session.execute(
        statement,
        [
            {
                "b_id": delivery_id,
                "b_msg": first_seen[delivery_id].provider_message_id,
                "b_at": first_seen[delivery_id].occurred_at,
            }
            for delivery_id in open_ids
        ],
    )
    log.info("reconciled %d deliveries as sent from SendGrid events", len(open_ids))
    return len(open_ids)


def apply_suppressions(session: Session, events: Iterable[ParsedEvent], *, now: datetime) -> int:
    """Move recipients towards suppression; return how many changed state."""
    by_email: dict[str, list[ParsedEvent]] = defaultdict(list)
    for event in events:
        if event.email and effect_of(event) is not Effect.NONE:
            by_email[event.email].append(event)
    if not by_email:
        return 0
    # Locked in id order, so concurrent batches touching the same people cannot deadlock.
    statement = (
        select(Subscriber).where(Subscriber.email.in_(list(by_email))).order_by(Subscriber.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()  # soft-bounce counts are read-modify-write
    subscribers = {s.email: s for s in session.scalars(statement)}
    changed = 0
    for email in sorted(by_email):  # a stable lock order across concurrent batches
        changed += _act(session, email, by_email[email], subscribers.get(email), now=now)
    return changed


def _act(
    session: Session,
    email: str,
    events: Sequence[ParsedEvent],
    subscriber: Subscriber | None,
    *,
    now: datetime,
) -> int:
    confirmed_at = subscriber.confirmed_at if subscriber is not None else None
    effects = [
        effect
        for effect, event in ((effect_of(e), e) for e in events)
        if applies(effect, occurred_at=event.occurred_at, confirmed_at=confirmed_at)
    ]
    soft = sum(1 for e in effects if e is Effect.SOFT_BOUNCE)
    current = None
    if subscriber is not None:
        subscriber.soft_bounces = (subscriber.soft_bounces or 0) + soft
        current = SubscriberStatus(subscriber.status)
    total_soft = subscriber.soft_bounces if subscriber is not None else 0
    target = target_status(current, effects, soft_bounces=total_soft)
    if target is None:
        if subscriber is not None and soft:
            subscriber.updated_at = now
        return 0
    names = ",".join(sorted({e.event for e in events}))
    if subscriber is not None:
        withdraw(session, subscriber, now=now, status=target, source=f"sendgrid {names}")
    _ensure_suppressed(session, email, target, now=now)
    log.info("sendgrid %s: recipient now %s", names, target.value)
    return 1


def _ensure_suppressed(
    session: Session, email: str, status: SubscriberStatus, *, now: datetime
) -> None:
    """Add the hash to the suppression list, or raise its reason to the stronger one.

    Insert-or-ignore, then a conditional update: two batches suppressing the same address
    at once cannot collide on the unique hash.
    """
    hashed = email_hash(email)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Suppression)
        .values(email_hash=hashed, reason=status.value, created_at=now)
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    weaker = [r for r, rank in SUPPRESSION_SEVERITY.items() if rank < SEVERITY[status]]
    if weaker:
        session.execute(
            update(Suppression)
            .where(Suppression.email_hash == hashed, Suppression.reason.in_(weaker))
            .values(reason=status.value)
            .execution_options(synchronize_session=False)
        )
