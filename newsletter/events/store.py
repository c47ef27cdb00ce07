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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Dialect, Table, bindparam, func, literal, or_, select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.bound_lists import unindexed
from newsletter.db import transaction
from newsletter.events import postgres
from newsletter.events.parsing import ParsedBatch, ParsedEvent
from newsletter.events.suppression import apply_suppressions
from newsletter.models import Delivery, DeliveryStatus, ProviderEvent
from newsletter.tracking.provider import mirror_provider_events
from newsletter.webhooks.emit import emails_settled, listened

log = logging.getLogger(__name__)

RECONCILABLE = (
    DeliveryStatus.UNKNOWN.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.QUEUED.value,
    DeliveryStatus.FAILED.value,
)
_LOOKUP_CHUNK = 400  # keys per IN (...): twice that in one statement, far below any limit


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

    On SQLite (one writer at a time) concurrent batches of this process take turns
    (``newsletter.sqlite_writers``) instead of SQLite's sleep-and-poll busy handler.
    """
    with transaction(app.sessions) as session:
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
    new = insert_events(session, unique, now=now)
    reconciled = reconcile(session, unique, now=now)
    suppressed = apply_suppressions(session, new, now=now)
    mirror_provider_events(session, new)
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


def insert_events(
    session: Session, events: Sequence[ParsedEvent], *, now: datetime
) -> list[ParsedEvent]:
    """Insert if new on either unique key; return the events whose rows were created."""
    if not events:
        return []
    if session.get_bind().dialect.name == "postgresql":
        created = postgres.insert_events(session, events, now=now)
    else:
        created = _insert_portable(session, events, now=now)
    return [e for e in events if e.logical_key in created]


def _insert_portable(session: Session, events: Sequence[ParsedEvent], *, now: datetime) -> set[str]:
    """SQLite: one query for the keys already stored, one ``executemany`` for the rest.

    No per-row RETURNING: the write lock (``BEGIN IMMEDIATE``) is held, so nothing can be
    stored between the look-up and the insert; ``OR IGNORE`` stays as a second guard."""
    connection = session.connection()
    table = cast(Table, ProviderEvent.__table__)
    keys = [e.logical_key for e in events]
    ids = [e.sg_event_id for e in events if e.sg_event_id]
    stored: set[str] = set()
    seen_ids: set[str] = set()
    # Two look-ups, each on its own unique index (an OR of both would scan the table).
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        stored.update(
            connection.scalars(select(table.c.logical_key).where(table.c.logical_key.in_(chunk)))
        )
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        seen_ids.update(
            connection.scalars(select(table.c.sg_event_id).where(table.c.sg_event_id.in_(chunk)))
        )
    new = [
        e
        for e in sorted(events, key=lambda e: e.logical_key)
        if e.logical_key not in stored and not (e.sg_event_id and e.sg_event_id in seen_ids)
    ]
    if not new:
        return set()
    # The driver's own executemany over plain tuples: the column types' bind processors
    # (UTC datetimes as SQLite text, the payload as JSON) are applied here, once per value,
    # instead of SQLAlchemy building and processing a parameter dict per row.
    dialect = connection.dialect
    at = _processor(table.c.occurred_at, dialect)
    payload = _processor(table.c.payload, dialect)
    received = at(now)
    connection.exec_driver_sql(
        _INSERT_SQL,
        [
            (
                e.sg_event_id,
                e.logical_key,
                e.event,
                e.email_hash,
                at(e.occurred_at),
                e.delivery_id,
                e.sg_message_id,
                payload(dict(e.payload)),
                received,
            )
            for e in new
        ],
    )
    return {e.logical_key for e in new}


# SQLite: qmark parameters; OR IGNORE as the second guard (see ``_insert_portable``).
_INSERT_SQL = (
    "INSERT OR IGNORE INTO provider_events (sg_event_id, logical_key, event, email_hash,"
    " occurred_at, delivery_id, sg_message_id, payload, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _processor(column: ColumnElement[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """What SQLAlchemy does to a value bound to ``column`` (identity if nothing)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value


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
    reported = _to_report(session, first_seen)  # outgoing webhooks: email.sent
    if session.get_bind().dialect.name == "postgresql":
        settled = postgres.settle_deliveries(session, first_seen, RECONCILABLE, now=now)
    else:
        settled = _settle_portable(session, first_seen, now=now)
    emails_settled(session, reported, now=now)
    if settled:
        log.info("reconciled %d deliveries as sent from SendGrid events", settled)
    return settled


def _to_report(
    session: Session, first_seen: dict[int, ParsedEvent]
) -> dict[int, tuple[str, str | None, str | None]]:
    """The rows reconciling turns into ``sent``, for ``email.sent`` webhooks."""
    if not listened(session, "email.sent"):
        return {}
    ids = session.scalars(
        select(Delivery.id).where(
            Delivery.id.in_(sorted(first_seen)),
            unindexed(session, Delivery.status).in_(RECONCILABLE),
        )
    )
    return {i: ("sent", first_seen[i].provider_message_id, None) for i in ids}


def _settle_portable(session: Session, first_seen: dict[int, ParsedEvent], *, now: datetime) -> int:
    open_ids = sorted(  # updated in id order: no deadlock between concurrent batches
        session.scalars(
            select(Delivery.id).where(
                Delivery.id.in_(list(first_seen)),
                # by id, not every queued or failed row (SQLite, no statistics)
                unindexed(session, Delivery.status).in_(RECONCILABLE),
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
    return len(open_ids)
