"""The subscriber roster: add, look up, list, export. (Import lives in ``importing``.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter.addresses import normalize_email
from newsletter.app import App
from newsletter.content.model import SubscriberContext
from newsletter.db import transaction
from newsletter.engagement import engagement_history
from newsletter.errors import SubscriberNotFound, SuppressedAddressError, UnknownTimeZoneError
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    Enrollment,
    Subscriber,
    SubscriberStatus,
)
from newsletter.settings import Settings
from newsletter.subscriptions import (
    SubscribeOutcome,
    SubscribeRequest,
    activate,
    clean_first_name,
    clean_tags,
    new_public_id,
    resolve_timezone,
    subscribe,
)
from newsletter.webhooks.emit import subscribers_changed
from newsletter.withdrawals import is_suppressed
from newsletter.zones import find_zone

PAGE = 1000


@dataclass(frozen=True)
class AddResult:
    email: str
    status: str
    outcome: str


def add_subscriber(
    app: App,
    raw_email: str,
    *,
    first_name: str | None,
    timezone: str | None,
    tags: tuple[str, ...],
    confirmed: bool,
    now: datetime,
) -> AddResult:
    """Add one subscriber: double opt-in by default, active at once with ``confirmed``."""
    if timezone and find_zone(timezone) is None:
        raise UnknownTimeZoneError(timezone)
    request = SubscribeRequest(
        email=raw_email,
        first_name=first_name,
        timezone=timezone,
        tags=tags,
        source="cli",
        consent_text=None,
    )
    if not confirmed:
        outcome = subscribe(app, request, now=now)
        if outcome is SubscribeOutcome.SUPPRESSED:
            raise SuppressedAddressError(normalize_email(raw_email), "bounced or complained")
        return AddResult(normalize_email(raw_email), _status(app, raw_email), outcome.value)
    email = normalize_email(raw_email)
    with transaction(app.sessions) as session:
        reason = is_suppressed(session, email)
        if reason is not None:
            # Someone who opted out (or asked to be forgotten) can only come back by
            # confirming themselves: add them without --confirmed to send the opt-in email.
            raise SuppressedAddressError(email, reason)
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if subscriber is None:
            subscriber = Subscriber(
                public_id=new_public_id(),
                email=email,
                first_name=clean_first_name(first_name),
                timezone=resolve_timezone(timezone, app.settings.default_timezone),
                status=SubscriberStatus.PENDING.value,
                tags=clean_tags(tags),
                attributes={},
                source="cli",
                created_at=now,
                updated_at=now,
            )
            session.add(subscriber)
            session.flush()
            subscribers_changed(session, "subscriber.created", [subscriber.id], now=now)
        if subscriber.status == SubscriberStatus.ACTIVE.value:
            return AddResult(email, subscriber.status, "already_active")
        if subscriber.status in (SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value):
            raise SuppressedAddressError(email, subscriber.status)
        activate(app, session, subscriber, now=now, kind=ConsentKind.IMPORTED, source="cli")
        return AddResult(email, subscriber.status, "activated")


def _status(app: App, raw_email: str) -> str:
    with app.sessions() as session:
        status = session.scalar(
            select(Subscriber.status).where(Subscriber.email == normalize_email(raw_email))
        )
    return status or "suppressed"


def find(session: Session, raw_email: str) -> Subscriber:
    email = normalize_email(raw_email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is None:
        raise SubscriberNotFound(email)
    return subscriber


def subscriber_context(settings: Settings, raw_email: str) -> SubscriberContext:
    """What templates see for this subscriber (used by ``preview --subscriber``)."""
    app = App(settings)
    try:
        with app.sessions() as session:
            s = find(session, raw_email)
            return SubscriberContext(
                email=s.email,
                first_name=s.first_name,
                timezone=s.timezone,
                tags=tuple(s.tags),
                attributes=dict(s.attributes or {}),
            )
    finally:
        app.close()


def iter_subscribers(
    app: App, *, status: str | None = None, tag: str | None = None, search: str | None = None
) -> Iterator[dict[str, Any]]:
    """Stream rows page by page (keyset pagination on id).

    ``search`` keeps addresses or first names containing it (case-insensitive; ``%`` and
    ``_`` are matched literally).
    """
    last = 0
    while True:
        with app.sessions() as session:
            statement = select(Subscriber).where(Subscriber.id > last).order_by(Subscriber.id)
            if status:
                statement = statement.where(Subscriber.status == status)
            if search:
                pattern = "%" + _escape_like(search.strip().lower()) + "%"
                statement = statement.where(
                    or_(
                        Subscriber.email.like(pattern, escape="\\"),
                        func.lower(Subscriber.first_name).like(pattern, escape="\\"),
                    )
                )
            page = list(session.scalars(statement.limit(PAGE)))
        if not page:
            return
        for s in page:
            if tag and tag.lower() not in (s.tags or []):
                continue
            yield summary(s)
        last = page[-1].id


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def summary(s: Subscriber) -> dict[str, Any]:
    return {
        "email": s.email,
        "first_name": s.first_name,
        "status": s.status,
        "timezone": s.timezone,
        "tags": list(s.tags or []),
        "source": s.source,
        "created_at": s.created_at.isoformat(timespec="seconds"),
        "confirmed_at": s.confirmed_at.isoformat(timespec="seconds") if s.confirmed_at else None,
    }


def export(app: App, raw_email: str) -> dict[str, Any]:
    """Everything held about one subscriber: profile, consent record, enrollments, emails."""
    with app.sessions() as session:
        s = find(session, raw_email)
        consents = session.scalars(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == s.id).order_by(ConsentEvent.id)
        )
        enrollments = session.scalars(select(Enrollment).where(Enrollment.subscriber_id == s.id))
        deliveries = session.scalars(
            select(Delivery).where(Delivery.subscriber_id == s.id).order_by(Delivery.id)
        )
        return {
            "subscriber": {**summary(s), "attributes": s.attributes},
            "consent": [
                {
                    "kind": c.kind,
                    "at": c.at.isoformat(),
                    "ip": c.ip,
                    "user_agent": c.user_agent,
                    "source": c.source,
                    "consent_text": c.consent_text,
                    "delivery_id": c.delivery_id,
                }
                for c in consents
            ],
            "enrollments": [
                {
                    "sequence": e.sequence,
                    "status": e.status,
                    "next_step": e.position + 1,  # 1-based, as every step number shown
                    "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None,
                }
                for e in enrollments
            ],
            "deliveries": [
                {
                    "id": d.id,
                    "kind": d.kind,
                    "item": d.item_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                    "error": d.error,
                }
                for d in deliveries
            ],
            "engagement": engagement_history(session, s.id),
        }
