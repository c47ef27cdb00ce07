"""``subscribers timeline EMAIL``: one time-ordered list of everything that happened to (and
is planned for) one subscriber, built from a list of *sources*.

A source is a function ``(session, subscriber) -> Iterable[TimelineEntry]``; ``SOURCES``
lists them in a fixed order (ties in time keep that order). Adding one, e.g. engagement
events (opens, clicks), is one function and one line in ``SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.errors import SubscriberNotFound
from newsletter.models import (
    ConsentEvent,
    Delivery,
    DeliveryDeferral,
    Enrollment,
    ProviderEvent,
    Subscriber,
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


SOURCES: list[Source] = [
    consent_entries,
    enrollment_entries,
    ledger_entries,
    deferral_entries,
    provider_entries,
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
