"""Create-or-update, change and tag subscribers on behalf of the REST API.

Decisions (copied into the README):

* ``POST /api/v1/subscribers`` without ``confirmed`` goes through double opt-in exactly
  like the form (a new or pending address gets the confirmation email, at most one an
  hour). With ``"confirmed": true`` the caller vouches for consent it collected itself
  (a shop's checkout box): ``consent.source`` is required and recorded with
  ``consent.text`` in the consent record, and the address is active at once.
* It never revives an address that unsubscribed, bounced, complained or was forgotten:
  that is a ``SubscriberConflict`` (HTTP 409); such a person can come back only through
  the form's double opt-in.
* An active subscriber is updated in place: name and time zone replaced when given, tags
  added, attributes merged (a ``null`` value removes a field).
* Tags added here fire ``on_tag`` triggers (enroll and exit) like any other tag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import attributes as custom_fields
from newsletter.addresses import normalize_email
from newsletter.app import App
from newsletter.automation.enrolling import Changes, on_tags_added
from newsletter.db import transaction
from newsletter.errors import NewsletterError, SubscriberConflict, SubscriberNotFound
from newsletter.models import (
    ConsentKind,
    Enrollment,
    Subscriber,
    SubscriberStatus,
)
from newsletter.subscribers import summary
from newsletter.subscriptions import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    SubscribeOutcome,
    SubscribeRequest,
    activate,
    clean_first_name,
    clean_tags,
    forget,
    new_public_id,
    subscribe,
    withdraw,
)
from newsletter.webhooks.emit import subscribers_changed
from newsletter.withdrawals import is_suppressed
from newsletter.zones import find_zone

WITHDRAWN = (
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.BOUNCED.value,
    SubscriberStatus.COMPLAINED.value,
)
MAX_SOURCE = 500
MAX_CONSENT_TEXT = 2000


class InvalidField(NewsletterError, ValueError):
    """A field of a subscriber request is invalid; ``field`` names it."""

    def __init__(self, name: str, message: str) -> None:
        self.field = name
        super().__init__(message)


@dataclass(frozen=True)
class Upsert:
    email: str
    first_name: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, object] | None = None
    confirmed: bool = False
    consent_source: str | None = None
    consent_text: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class Result:
    profile: dict[str, Any]
    outcome: str
    created: bool = False
    changes: Changes = field(default_factory=Changes)


def profile(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """What the API shows about a subscriber."""
    enrollments = session.scalars(
        select(Enrollment).where(Enrollment.subscriber_id == subscriber.id).order_by(Enrollment.id)
    )
    return {
        **summary(subscriber),
        "attributes": dict(subscriber.attributes or {}),
        "enrollments": [
            {
                "sequence": e.sequence,
                "status": e.status,
                "next_step": e.position + 1,  # 1-based, as every step number shown
                "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None,
            }
            for e in enrollments
        ],
    }


def check_timezone(name: str | None) -> str | None:
    if name is not None and find_zone(name) is None:
        raise InvalidField(
            "timezone", f"unknown time zone {name[:64]!r}; use an IANA name like Europe/Berlin"
        )
    return name


def check_tags(tags: Sequence[str]) -> list[str]:
    for tag in tags:
        if not tag.strip() or len(tag) > MAX_TAG_LENGTH or "," in tag:
            raise InvalidField(
                "tags", f"bad tag {tag[:70]!r}: 1 to {MAX_TAG_LENGTH} characters, no commas"
            )
    return clean_tags(list(tags))


def _too_many(tags: list[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise InvalidField("tags", f"{len(tags)} tags; a subscriber has at most {MAX_TAGS}")


def _refuse_withdrawn(session: Session, email: str, subscriber: Subscriber | None) -> None:
    reason = subscriber.status if subscriber and subscriber.status in WITHDRAWN else None
    reason = reason or is_suppressed(session, email)
    if reason is not None:
        raise SubscriberConflict(
            email,
            reason,
            f"{email!r} is {reason}; the API does not resubscribe it. They can come back "
            "by subscribing themselves through the form (double opt-in)",
        )


def upsert_subscriber(app: App, request: Upsert, *, now: datetime) -> Result:
    """Create or update by email; see the module's decisions. Raises ``InvalidField``,
    ``InvalidAttributes``, ``InvalidEmailError`` and ``SubscriberConflict``."""
    email = normalize_email(request.email)
    fields = custom_fields.validate(request.attributes or {})
    check_timezone(request.timezone)
    tags = check_tags(request.tags)
    _too_many(tags)
    source = (request.consent_source or "").strip()[:MAX_SOURCE] or None
    text = (request.consent_text or "").strip()[:MAX_CONSENT_TEXT] or None
    if request.confirmed and source is None:
        raise InvalidField(
            "consent",
            'with "confirmed": true, consent.source is required: say where this person '
            'agreed (e.g. {"source": "checkout", "text": "Send me tips"})',
        )
    with transaction(app.sessions) as session:
        subscriber = session.scalar(
            select(Subscriber).where(Subscriber.email == email).with_for_update()
        )
        _refuse_withdrawn(session, email, subscriber)
        active = subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE.value
        if subscriber is not None and active:
            changes = _update(app, session, subscriber, request, fields, tags, now=now)
            return Result(profile(session, subscriber), "updated", changes=changes)
        if request.confirmed:
            created = subscriber is None
            if subscriber is None:
                subscriber = Subscriber(
                    public_id=new_public_id(),
                    email=email,
                    first_name=clean_first_name(request.first_name),
                    timezone=request.timezone or app.settings.default_timezone,
                    status=SubscriberStatus.PENDING.value,
                    tags=tags,
                    attributes=fields,
                    source=source,
                    created_at=now,
                    updated_at=now,
                    soft_bounces=0,
                )
                session.add(subscriber)
                session.flush()
                subscribers_changed(session, "subscriber.created", [subscriber.id], now=now)
            else:
                _update(app, session, subscriber, request, fields, tags, now=now)
            activate(
                app,
                session,
                subscriber,
                now=now,
                ip=request.ip,
                kind=ConsentKind.CONFIRMED,
                source=source,
                consent_text=text,
            )
            return Result(profile(session, subscriber), "activated", created=created)
        created = subscriber is None
    outcome = subscribe(
        app,
        SubscribeRequest(
            email=email,
            first_name=request.first_name,
            timezone=request.timezone,
            tags=tuple(tags),
            source=source or "api",
            ip=request.ip,
            consent_text=text,
            attributes=dict(fields),
        ),
        now=now,
    )
    if outcome is SubscribeOutcome.SUPPRESSED:
        raise SubscriberConflict(email, "suppressed", f"{email!r} is suppressed")
    with app.sessions() as session:
        found = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        return Result(profile(session, found), outcome.value, created=created)


def _update(
    app: App,
    session: Session,
    subscriber: Subscriber,
    request: Upsert,
    fields: Mapping[str, object],
    tags: list[str],
    *,
    now: datetime,
) -> Changes:
    if request.first_name is not None:
        subscriber.first_name = clean_first_name(request.first_name)
    if request.timezone is not None:
        subscriber.timezone = request.timezone
    if fields:
        subscriber.attributes = custom_fields.merge(subscriber.attributes or {}, fields)
    subscriber.updated_at = now
    return _add_tags(app, session, subscriber, tags, now=now)


def _add_tags(
    app: App, session: Session, subscriber: Subscriber, tags: list[str], *, now: datetime
) -> Changes:
    have = list(subscriber.tags or [])
    added = [t for t in tags if t not in have]
    if not added:
        return Changes()
    merged = have + added
    _too_many(merged)
    subscriber.tags = merged
    session.flush()
    return on_tags_added(session, subscriber, added, app.library.sequences(), now=now)


def _find_locked(session: Session, raw_email: str) -> Subscriber:
    email = normalize_email(raw_email)
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email == email).with_for_update()
    )
    if subscriber is None:
        raise SubscriberNotFound(email)
    return subscriber


def get_profile(app: App, raw_email: str) -> dict[str, Any]:
    email = normalize_email(raw_email)
    with app.sessions() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if subscriber is None:
            raise SubscriberNotFound(email)
        return profile(session, subscriber)


def patch_subscriber(
    app: App,
    raw_email: str,
    *,
    first_name: str | None,
    timezone: str | None,
    changes: Mapping[str, object] | None,
    now: datetime,
) -> dict[str, Any]:
    """Replace name / time zone when given; merge attributes (``None`` removes one)."""
    check_timezone(timezone)
    with transaction(app.sessions) as session:
        subscriber = _find_locked(session, raw_email)
        if first_name is not None:
            subscriber.first_name = clean_first_name(first_name)
        if timezone is not None:
            subscriber.timezone = timezone
        if changes:
            subscriber.attributes = custom_fields.merge(subscriber.attributes or {}, changes)
        subscriber.updated_at = now
        session.flush()
        return profile(session, subscriber)


def change_tags(
    app: App, raw_email: str, *, add: Sequence[str], remove: Sequence[str], now: datetime
) -> tuple[dict[str, Any], Changes]:
    """Add and remove tags; added tags fire ``on_tag`` triggers."""
    adding = check_tags(add)
    removing = set(check_tags(remove))
    both = [t for t in adding if t in removing]
    if both:
        raise InvalidField("tags", f"tag {both[0]!r} is both added and removed; drop one")
    with transaction(app.sessions) as session:
        subscriber = _find_locked(session, raw_email)
        kept = [t for t in subscriber.tags or [] if t not in removing]
        if len(kept) != len(subscriber.tags or []):
            subscriber.tags = kept
            subscriber.updated_at = now
        triggered = _add_tags(app, session, subscriber, adding, now=now)
        session.flush()
        return profile(session, subscriber), triggered


def remove_subscriber(app: App, raw_email: str, *, forget_data: bool, now: datetime) -> str:
    """Unsubscribe (``unsubscribed``) or erase (``forgotten``). ``SubscriberNotFound``."""
    if forget_data:
        forget(app, raw_email, now=now)
        return "forgotten"
    with transaction(app.sessions) as session:
        subscriber = _find_locked(session, raw_email)
        withdraw(session, subscriber, now=now, source="api")
        return subscriber.status
