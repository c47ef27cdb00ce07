"""The ``engagement_events`` table: what happened to each email after it left.

Written by tracking (``newsletter.tracking.hits``), SendGrid events
(``newsletter.events.store``), SMTP refusals and bounce reports (``newsletter.bounces``);
read by ``stats``, ``subscribers show``, the sunset policy and any timeline. One shape::

    delivery_id  subscriber_id  kind  human  reason  source  link_index  source_key  at

``kind`` is one of ``KINDS``; ``source_key`` (unique when set) makes one observation that
arrives twice count once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.models import EngagementEvent

OPEN, CLICK, BOUNCE, SOFT_BOUNCE, COMPLAINT, KEEP = (
    "open",
    "click",
    "bounce",
    "soft_bounce",
    "complaint",
    "keep",
)
KINDS = (OPEN, CLICK, BOUNCE, SOFT_BOUNCE, COMPLAINT, KEEP)
ENGAGED = (OPEN, CLICK, KEEP)  # a human one of these is engagement for the sunset policy


@dataclass(frozen=True)
class Engagement:
    kind: str
    at: datetime
    human: bool
    reason: str
    source: str
    delivery_id: int | None = None
    subscriber_id: int | None = None
    link_index: int | None = None
    source_key: str | None = None


def record(session: Session, events: Sequence[Engagement]) -> list[Engagement]:
    """Insert; an event whose ``source_key`` is already stored is skipped. Returns the
    events inserted. Does not commit."""
    if not events:
        return []
    rows: list[dict[str, Any]] = [asdict(e) for e in events]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(EngagementEvent)
        .on_conflict_do_nothing(index_elements=["source_key"])
        .returning(EngagementEvent.id)
    )
    inserted: list[Engagement] = []
    for event, row in zip(events, rows, strict=True):  # one by one: RETURNING per row
        if session.execute(statement, row).first() is not None:
            inserted.append(event)
    return inserted


def has_engagement_data(session: Session) -> bool:
    """True when any open or click was ever recorded, from any source."""
    found = session.scalar(
        select(EngagementEvent.id).where(EngagementEvent.kind.in_([OPEN, CLICK])).limit(1)
    )
    return found is not None


def engagement_history(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """One subscriber's opens, clicks, bounces, complaints and keeps, oldest first."""
    rows = session.scalars(
        select(EngagementEvent)
        .where(EngagementEvent.subscriber_id == subscriber_id)
        .order_by(EngagementEvent.at, EngagementEvent.id)
    )
    return [
        {
            "at": e.at.isoformat(),
            "kind": e.kind,
            "human": e.human,
            "reason": e.reason,
            "source": e.source,
            "delivery_id": e.delivery_id,
            "link_index": e.link_index,
        }
        for e in rows
    ]
