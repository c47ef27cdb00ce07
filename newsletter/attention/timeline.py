"""``subscribers timeline EMAIL``: one time-ordered list of everything that happened to (and
is planned for) one subscriber, built from a list of *sources*.

A source is a function ``(session, subscriber) -> Iterable[TimelineEntry]``; ``SOURCES``
lists them in a fixed order (ties in time keep that order). Adding one is one function and
one line in ``SOURCES``. The sources: consent events (and preference changes), enrollments,
every ledger row, deferrals, provider events, engagement events (opens, clicks, bounces,
complaints, keeps: ``engagement_events``), bounce reports read from the mailbox (matched by
the address's hash or by one of the subscriber's deliveries), custom events from the shop
(``subscriber_events``) and a pending sunset notice.

Not sources: ``source_events`` (a form source's event ids, kept only to drop repeats; they
name no subscriber) and webhook deliveries (our calls to the shop's endpoints, not
something that happened to the subscriber; the events they carry are already here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.errors import SubscriberNotFound
from newsletter.models import (
    BounceReport,
    ConsentEvent,
    Delivery,
    DeliveryDeferral,
    EngagementEvent,
    Enrollment,
    ProviderEvent,
    Subscriber,
    SubscriberEvent,
)

PREFERENCES_SOURCE = "preference centre"  # ConsentEvent.source of a preference change


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    source: str  # consent, enrollment, ledger, deferral, provider, preferences, ...
    what: str  # a short verb phrase: "sent", "subscribed", "deferred", ...
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "at": self.at.isoformat(),
            "source": self.source,
            "what": self.what,
            "detail": self.detail,
        }


Source = Callable[[Session, Subscriber], Iterable[TimelineEntry]]


def consent_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    for e in session.scalars(
        select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber.id)
    ):
        if e.source == PREFERENCES_SOURCE:
            yield TimelineEntry(e.at, "preferences", e.kind, e.consent_text or "")
        else:
            parts = [p for p in (e.source, e.ip and f"ip {e.ip}") if p]
            yield TimelineEntry(e.at, "consent", e.kind, ", ".join(parts))


def enrollment_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    for e in session.scalars(select(Enrollment).where(Enrollment.subscriber_id == subscriber.id)):
        yield TimelineEntry(e.created_at, "enrollment", "enrolled", f"sequence {e.sequence}")
        if e.next_due_at is not None:
            yield TimelineEntry(
                e.next_due_at, "enrollment", "next step due", f"sequence {e.sequence}"
            )


def ledger_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    for d in session.scalars(select(Delivery).where(Delivery.subscriber_id == subscriber.id)):
        label = f"{d.kind} {d.item_id} (delivery {d.id})"
        yield TimelineEntry(
            d.created_at, "ledger", "planned", f"{label}, due {d.due_at:%Y-%m-%d %H:%M} UTC"
        )
        if d.status == "sent" and d.sent_at is not None:
            yield TimelineEntry(d.sent_at, "ledger", "sent", label)
        elif d.status in ("skipped", "failed", "unknown"):
            yield TimelineEntry(d.updated_at, "ledger", d.status, f"{label}: {d.error or ''}")
        elif d.status == "queued" and d.deferred_from is not None:
            yield TimelineEntry(d.due_at, "ledger", "due (after deferral)", label)


def deferral_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    rows = session.execute(
        select(DeliveryDeferral, Delivery.item_id)
        .join(Delivery, Delivery.id == DeliveryDeferral.delivery_id)
        .where(DeliveryDeferral.subscriber_id == subscriber.id)
    ).all()
    for deferral, item_id in rows:
        yield TimelineEntry(
            deferral.at,
            "ledger",
            "deferred",
            f"{item_id} to {deferral.until:%Y-%m-%d %H:%M} UTC: {deferral.reason}",
        )


def provider_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    hashed = email_hash(subscriber.email)
    for e in session.scalars(select(ProviderEvent).where(ProviderEvent.email_hash == hashed)):
        detail = f"delivery {e.delivery_id}" if e.delivery_id else ""
        yield TimelineEntry(e.occurred_at, "provider", e.event, detail)


def engagement_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    for e in session.scalars(
        select(EngagementEvent)
        .where(EngagementEvent.subscriber_id == subscriber.id)
        .order_by(EngagementEvent.id)
    ):
        who = "human" if e.human else "machine"
        parts = [
            f"delivery {e.delivery_id}" if e.delivery_id is not None else "",
            f"link {e.link_index}" if e.link_index is not None else "",
            f"{who} ({e.reason})" if e.reason else who,
            f"via {e.source}",
        ]
        yield TimelineEntry(e.at, "engagement", e.kind, ", ".join(p for p in parts if p))


BOUNCE_KINDS = {"hard": "hard bounce", "soft": "soft bounce", "complaint": "complaint"}


def bounce_report_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    mine = select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
    for r in session.scalars(
        select(BounceReport)
        .where(
            or_(
                BounceReport.email_hash == email_hash(subscriber.email),
                BounceReport.delivery_id.in_(mine),
            )
        )
        .order_by(BounceReport.id)
    ):
        about = f"delivery {r.delivery_id}: " if r.delivery_id is not None else ""
        what = BOUNCE_KINDS.get(r.kind, r.kind)
        yield TimelineEntry(r.received_at, "bounce", f"{what} report", f"{about}{r.outcome}")


def shop_event_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    for e in session.scalars(
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == subscriber.id)
        .order_by(SubscriberEvent.id)
    ):
        properties = json.dumps(e.properties or {}, sort_keys=True, separators=(",", ":"))
        yield TimelineEntry(e.received_at, "event", e.name, f"key {e.key}, {properties}")


def sunset_entries(session: Session, subscriber: Subscriber) -> Iterable[TimelineEntry]:
    if subscriber.sunset_notice_at is not None:
        yield TimelineEntry(
            subscriber.sunset_notice_at,
            "sunset",
            "re-permission notice pending",
            "inactive after NEWSLETTER_SUNSET_GRACE_DAYS without a human open, click or keep",
        )


SOURCES: list[Source] = [
    consent_entries,
    enrollment_entries,
    ledger_entries,
    deferral_entries,
    provider_entries,
    engagement_entries,
    bounce_report_entries,
    shop_event_entries,
    sunset_entries,
]


def timeline(app: App, email: str, *, sources: Iterable[Source] = ()) -> list[TimelineEntry]:
    """Every entry of every source for ``email``, oldest first."""
    address = normalize_email(email)
    with app.sessions() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if subscriber is None:
            raise SubscriberNotFound(address)
        entries = [e for source in (list(sources) or SOURCES) for e in source(session, subscriber)]
    order = {id(e): n for n, e in enumerate(entries)}
    return sorted(entries, key=lambda e: (e.at, order[id(e)]))
