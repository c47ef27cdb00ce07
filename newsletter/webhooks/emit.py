"""One-line calls for the places that make a reported change: each reads what its payload
needs and hands the events to ``outbox.record_events``, in the caller's transaction.

Every function first asks whether any endpoint listens to its event types, so a service
without webhooks pays one small query per call and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import (
    Campaign,
    Delivery,
    Enrollment,
    Subscriber,
    WebhookEndpoint,
)
from newsletter.webhooks.outbox import Event, record_events
from newsletter.webhooks.payloads import (
    CampaignFacts,
    EmailFacts,
    SubscriberFacts,
    campaign_data,
    email_data,
    forgotten_data,
    sequence_data,
    subscriber_data,
)


def listened(session: Session, *types: str) -> set[str]:
    """Which of ``types`` at least one endpoint subscribes to."""
    wanted = set(types)
    found: set[str] = set()
    for subscribed in session.scalars(select(WebhookEndpoint.events)):
        found |= wanted & set(subscribed or ())
    return found


def facts(session: Session, subscriber_ids: Iterable[int]) -> dict[int, SubscriberFacts]:
    ids = sorted({i for i in subscriber_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(
        select(
            Subscriber.id,
            Subscriber.public_id,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.status,
            Subscriber.tags,
            Subscriber.timezone,
        ).where(Subscriber.id.in_(ids))
    )
    return {
        r.id: SubscriberFacts(
            r.public_id, r.email, r.first_name, r.status, tuple(r.tags or ()), r.timezone
        )
        for r in rows
    }


def subscribers_changed(
    session: Session,
    type: str,
    subscriber_ids: Sequence[int],
    *,
    now: datetime,
    extra: Mapping[int, Mapping[str, Any]] | None = None,
) -> None:
    """``subscriber.created`` / ``.confirmed`` / ``.unsubscribed`` / ``.bounced`` /
    ``.complained`` for these subscribers, as they are now (flushed state)."""
    if not subscriber_ids or not listened(session, type):
        return
    session.flush()
    known = facts(session, subscriber_ids)
    events: list[Event] = [
        (type, subscriber_data(known[i], **dict((extra or {}).get(i, {}))))
        for i in subscriber_ids
        if i in known
    ]
    record_events(session, events, now=now)


def subscriber_forgotten(session: Session, public_id: str, *, now: datetime) -> None:
    if listened(session, "subscriber.forgotten"):
        record_events(session, [("subscriber.forgotten", forgotten_data(public_id))], now=now)


def emails_settled(
    session: Session, outcomes: Mapping[int, tuple[str, str | None, str | None]], *, now: datetime
) -> None:
    """``email.sent`` / ``email.failed``: delivery id -> (status, provider id, error)."""
    if not outcomes:
        return
    types = listened(session, "email.sent", "email.failed")
    chosen = {i: o for i, o in outcomes.items() if f"email.{o[0]}" in types}
    if not chosen:
        return
    rows = list(
        session.execute(
            select(
                Delivery.id,
                Delivery.kind,
                Delivery.item_id,
                Delivery.subscriber_id,
                Campaign.name.label("campaign"),
                Enrollment.sequence,
            )
            .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
            .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Delivery.id.in_(sorted(chosen)))
            .order_by(Delivery.id)
        )
    )
    known = facts(session, (r.subscriber_id for r in rows))
    events: list[Event] = []
    for r in rows:
        status, message_id, error = chosen[r.id]
        email = EmailFacts(
            r.id, r.kind, r.item_id, status, r.campaign, r.sequence, message_id, error
        )
        who = known.get(r.subscriber_id) if r.subscriber_id is not None else None
        events.append((f"email.{status}", email_data(email, who)))
    record_events(session, events, now=now)


def sequences_ended(
    session: Session,
    type: str,
    enrollments: Sequence[tuple[int, str]],
    *,
    now: datetime,
    reason: str | None = None,
) -> None:
    """``sequence.completed`` / ``sequence.exited``: (subscriber id, sequence name) pairs.
    ``reason`` (exits: ``unsubscribed``, ``bounced``, ``tag``, ``event`` ...) is in data."""
    if not enrollments or not listened(session, type):
        return
    known = facts(session, (s for s, _ in enrollments))
    extra = {} if reason is None else {"reason": reason}
    events: list[Event] = [
        (type, sequence_data(name, known.get(sid), **extra)) for sid, name in enrollments
    ]
    record_events(session, events, now=now)


def campaign_changed(session: Session, type: str, campaign: Campaign, *, now: datetime) -> None:
    """``campaign.started`` / ``campaign.finished`` (a cancelled campaign finishes too:
    ``data.campaign.state`` says which)."""
    if not listened(session, type):
        return
    fact = CampaignFacts(
        campaign.name,
        campaign.item_id,
        campaign.state,
        campaign.started_at,
        campaign.finished_at,
        campaign.audience_count,
    )
    record_events(session, [(type, campaign_data(fact))], now=now)
