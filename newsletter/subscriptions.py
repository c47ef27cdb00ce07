"""Subscription use cases: subscribe, confirm, unsubscribe, forget.

Each use case owns its transaction and receives ``now``.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, Row, String, bindparam, column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.automation.enrolling import on_tags_added
from newsletter.db import transaction
from newsletter.enrollment import enroll_on_confirm
from newsletter.errors import SubscriberNotFound, TokenError
from newsletter.events.inbox import forget_address
from newsletter.ledger import NewDelivery, enqueue
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    SourceEvent,
    Subscriber,
    SubscriberStatus,
    Suppression,
    UTCDateTime,
)
from newsletter.one_line import clean_tag, one_line
from newsletter.tokens import read_confirm_token, read_unsubscribe_token
from newsletter.webhooks.emit import listened, subscriber_forgotten, subscribers_changed
from newsletter.withdrawals import (
    STATUS_SEVERITY,
    Withdrawal,
    is_suppressed,
    record_withdrawals,
    suppress_many,
)
from newsletter.zones import find_zone

log = logging.getLogger(__name__)

CONFIRMATION_ITEM = "system/confirmation"
CONFIRMATION_INTERVAL = timedelta(hours=1)
CONSENT_TEXT = "v1: I want to receive emails with back pain relief tips every few days."
MAX_TAGS = 20
MAX_TAG_LENGTH = 64


class SubscribeOutcome(enum.StrEnum):
    CONFIRMATION_QUEUED = "confirmation_queued"
    THROTTLED = "throttled"  # a confirmation went out less than an hour ago
    ALREADY_ACTIVE = "already_active"
    SUPPRESSED = "suppressed"
    DUPLICATE = "duplicate"  # a form source's event id seen before: nothing done
    ACTIVATED = "activated"  # single opt-in (a signed checkout's consent): active at once


@dataclass(frozen=True)
class SubscribeRequest:
    email: str
    first_name: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    source: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    consent_text: str | None = CONSENT_TEXT
    # Form sources (``sources.yaml``): the sender's event id, deduplicated per ``source``,
    # and single opt-in, decided by ``newsletter.sources.decide`` (signed checkouts only).
    event_id: str | None = None
    single_opt_in: bool = False
    attributes: dict[str, object] | None = None  # custom fields (checked by the caller)


def new_public_id() -> str:
    return secrets.token_hex(16)


def resolve_timezone(name: str | None, default: str) -> str:
    """An IANA zone, or the default (logged) when missing or unknown."""
    if not name:
        return default
    if find_zone(name) is None:
        log.warning("unknown time zone %r, using %s", name[:64], default)
        return default
    return name


MAX_NAME_LENGTH = 100


def clean_first_name(raw: str | None) -> str | None:
    """A name safe for greetings and email headers: one line, at most 100 characters."""
    return one_line(raw or "")[:MAX_NAME_LENGTH].strip() or None


def clean_tags(tags: tuple[str, ...] | list[str]) -> list[str]:
    """Tags cleaned like names (one line, no control or surrogate characters), lower
    case, without duplicates, at most ``MAX_TAGS``."""
    seen: list[str] = []
    for tag in tags:
        tag = clean_tag(tag, max_length=MAX_TAG_LENGTH)
        if tag and tag not in seen:
            seen.append(tag)
    return seen[:MAX_TAGS]


def suppress(session: Session, email: str, reason: str, *, now: datetime) -> None:
    """Add (or strengthen) the address on the suppression list. Does not commit."""
    suppress_many(session, {email: reason}, now=now)


def subscribe(app: App, request: SubscribeRequest, *, now: datetime) -> SubscribeOutcome:
    """Create or refresh a pending subscriber and queue one confirmation email.

    The caller answers the same whatever the outcome. Raises ``InvalidEmailError``.
    """
    email = normalize_email(request.email)
    with transaction(app.sessions) as session:
        return subscribe_in(session, app, request, now=now, email=email)


def subscribe_in(
    session: Session,
    app: App,
    request: SubscribeRequest,
    *,
    now: datetime,
    email: str | None = None,
    facts: dict[str, Any] | None = None,
) -> SubscribeOutcome:
    """``subscribe`` inside the caller's transaction (several may share one). No commit.

    Three or four statements for the usual post (two on PostgreSQL): one upsert that,
    unless the address is suppressed, creates the row or locks and returns the existing
    one; an update when it existed; the consent record and the confirmation's ledger row
    (one statement on PostgreSQL). ``facts`` caches per transaction which webhook types
    are listened to.
    """
    email = email or normalize_email(request.email)
    if request.event_id is not None and not _first_sight(session, request, now=now):
        return SubscribeOutcome.DUPLICATE
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    values = _new_subscriber(app, email, request, now=now)
    # A new row gets its confirmation now (unless it is activated at once).
    values["last_confirmation_at"] = None if request.single_opt_in else now
    values["hash"] = email_hash(email)
    # Unless the address is suppressed (bounced or complained: then nothing is written and
    # no row comes back), creates the row, or locks the existing one (PostgreSQL: ON
    # CONFLICT DO UPDATE takes the row lock; SQLite: BEGIN IMMEDIATE) and returns it as
    # last committed: two posts of the same address at once queue here, and the
    # one-confirmation-per-hour check below sees the other's write. One round trip.
    row = connection.execute(_UPSERT_PG if postgres else _UPSERT, values).one_or_none()
    if row is None:
        return SubscribeOutcome.SUPPRESSED
    created = row.public_id == values["public_id"]
    if created and _listens(session, facts, "subscriber.created"):
        subscribers_changed(session, "subscriber.created", [row.id], now=now)
    if row.status == SubscriberStatus.ACTIVE.value:
        return SubscribeOutcome.ALREADY_ACTIVE
    if row.status in (SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value):
        return SubscribeOutcome.SUPPRESSED
    # The throttle is for repeated posts of a pending address; someone who
    # unsubscribed and asks again gets their link, however recent the last one.
    last = None if created else row.last_confirmation_at
    throttled = (
        not request.single_opt_in
        and row.status == SubscriberStatus.PENDING.value
        and last is not None
        and now - last < CONFIRMATION_INTERVAL
    )
    queue = not request.single_opt_in and not throttled
    if not created:
        changes = _refresh(app, row, request, now=now)
        changes["last_confirmation_at"] = now if queue else row.last_confirmation_at
        connection.execute(_REFRESH, changes)
    consent = _consent_values(row.id, ConsentKind.SUBSCRIBED, request, now=now)
    if postgres and queue:  # the consent record and the ledger row in one round trip
        connection.execute(_CONSENT_AND_CONFIRMATION_PG, {**consent, **_confirmation(row.id, now)})
        return SubscribeOutcome.CONFIRMATION_QUEUED
    connection.execute(_CONSENT, consent)
    if request.single_opt_in:
        subscriber = session.get(Subscriber, row.id, populate_existing=True)
        assert subscriber is not None  # written above, in this transaction
        activate(app, session, subscriber, now=now, ip=request.ip, source=request.source)
        return SubscribeOutcome.ACTIVATED
    if throttled:
        return SubscribeOutcome.THROTTLED
    connection.execute(_CONFIRMATION, _confirmation(row.id, now))
    return SubscribeOutcome.CONFIRMATION_QUEUED


def _confirmation(subscriber_id: int, now: datetime) -> dict[str, Any]:
    """``_CONFIRMATION``'s parameters: the confirmation email's ledger row."""
    return {
        "key": f"confirm:{subscriber_id}:{now.strftime('%Y%m%dT%H%M%S')}",
        "delivery_kind": DeliveryKind.CONFIRMATION.value,
        "item_id": CONFIRMATION_ITEM,
        "subscriber_id": subscriber_id,
        "status": DeliveryStatus.QUEUED.value,
        "now": now,
    }


# Built once, so the hot path renders nothing. The upsert inserts from a SELECT so that a
# suppressed address (bounced, complained) writes nothing and returns no row; PostgreSQL
# types a SELECT's parameters as text, hence its casts (SQLite has no such types).
_BLOCKED = (
    "NOT EXISTS (SELECT 1 FROM suppressions WHERE email_hash = :hash"
    " AND reason IN ('bounced', 'complained'))"
)
_UPSERT_SQL = """
    INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
                             attributes, source, created_at, updated_at, soft_bounces,
                             last_confirmation_at)
    SELECT :public_id, :email, :first_name, :timezone, :status, {tags}, {attributes},
           :source, {created_at}, {updated_at}, :soft_bounces, {last_confirmation_at}
    WHERE {blocked}
    ON CONFLICT (email) DO UPDATE SET email = excluded.email
    RETURNING id, public_id, status, last_confirmation_at, first_name, timezone, tags,
              attributes
"""
# The subscriber columns an upsert returns (``subscribe_batch`` returns ``email`` too).
UPSERT_COLUMNS = (
    column("id", Integer),
    column("public_id", String),
    column("status", String),
    column("last_confirmation_at", UTCDateTime()),
    column("first_name", String),
    column("timezone", String),
    column("tags", JSON()),
    column("attributes", JSON()),
)
_UPSERT_BINDS = (
    bindparam("tags", type_=JSON()),
    bindparam("attributes", type_=JSON()),
    bindparam("created_at", type_=UTCDateTime()),
    bindparam("updated_at", type_=UTCDateTime()),
    bindparam("last_confirmation_at", type_=UTCDateTime()),
)
_PLAIN = {
    name: f":{name}"
    for name in ("tags", "attributes", "created_at", "updated_at", "last_confirmation_at")
}
_CASTS = {
    "tags": "CAST(:tags AS JSON)",
    "attributes": "CAST(:attributes AS JSON)",
    "created_at": "CAST(:created_at AS TIMESTAMPTZ)",
    "updated_at": "CAST(:updated_at AS TIMESTAMPTZ)",
    "last_confirmation_at": "CAST(:last_confirmation_at AS TIMESTAMPTZ)",
}
_UPSERT = (
    text(_UPSERT_SQL.format(blocked=_BLOCKED, **_PLAIN))
    .bindparams(*_UPSERT_BINDS)
    .columns(*UPSERT_COLUMNS)
)
_UPSERT_PG = (
    text(_UPSERT_SQL.format(blocked=_BLOCKED, **_CASTS))
    .bindparams(*_UPSERT_BINDS)
    .columns(*UPSERT_COLUMNS)
)
_REFRESH = text(
    """
    UPDATE subscribers SET first_name = :first_name, timezone = :timezone, tags = :tags,
        attributes = :attributes, status = :status, updated_at = :updated_at,
        last_confirmation_at = :last_confirmation_at
    WHERE id = :id
    """
).bindparams(
    bindparam("tags", type_=JSON()),
    bindparam("attributes", type_=JSON()),
    bindparam("updated_at", type_=UTCDateTime()),
    bindparam("last_confirmation_at", type_=UTCDateTime()),
)
_CONSENT_SQL = """
    INSERT INTO consent_events (subscriber_id, kind, at, ip, user_agent, source,
                                consent_text, source_event_id)
    VALUES (:subscriber_id, :kind, :at, :ip, :user_agent, :source, :consent_text,
            :source_event_id)
"""
_CONFIRMATION_SQL = """
    INSERT INTO deliveries (key, kind, item_id, due_at, subscriber_id, status, attempts,
                            created_at, updated_at)
    VALUES (:key, :delivery_kind, :item_id, :now, :subscriber_id, :status, 0, :now, :now)
    ON CONFLICT (key) DO NOTHING
"""
_CONSENT = text(_CONSENT_SQL).bindparams(bindparam("at", type_=UTCDateTime()))
_CONFIRMATION = text(_CONFIRMATION_SQL).bindparams(bindparam("now", type_=UTCDateTime()))
# PostgreSQL runs a data-modifying CTE to completion whatever the outer statement does.
_CONSENT_AND_CONFIRMATION_PG = text(
    f"WITH consent AS ({_CONSENT_SQL}) {_CONFIRMATION_SQL}"
).bindparams(bindparam("at", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime()))


def _listens(session: Session, facts: dict[str, Any] | None, event_type: str) -> bool:
    """Whether a webhook endpoint wants ``event_type``; asked once per shared transaction."""
    if facts is None:
        return bool(listened(session, event_type))
    key = f"listened:{event_type}"
    if key not in facts:
        facts[key] = bool(listened(session, event_type))
    return bool(facts[key])


def queue_confirmations(session: Session, subscriber_ids: Iterable[int], *, now: datetime) -> None:
    """One confirmation email each, in one insert. Does not commit."""
    stamp = now.strftime("%Y%m%dT%H%M%S")
    enqueue(
        session,
        [
            NewDelivery(
                key=f"confirm:{subscriber_id}:{stamp}",
                kind=DeliveryKind.CONFIRMATION,
                item_id=CONFIRMATION_ITEM,
                due_at=now,
                subscriber_id=subscriber_id,
            )
            for subscriber_id in subscriber_ids
        ],
        now=now,
    )


def _first_sight(session: Session, request: SubscribeRequest, *, now: datetime) -> bool:
    """Record the source's event id; False when it was recorded before (a replay)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(SourceEvent)
        .values(source=(request.source or "")[:64], event_id=request.event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
    )
    return session.execute(statement.returning(SourceEvent.id)).first() is not None


def _new_subscriber(
    app: App, email: str, request: SubscribeRequest, *, now: datetime
) -> dict[str, object]:
    """Column values of a new pending subscriber."""
    return {
        "public_id": new_public_id(),
        "email": email,
        "first_name": clean_first_name(request.first_name),
        "timezone": resolve_timezone(request.timezone, app.settings.default_timezone),
        "status": SubscriberStatus.PENDING.value,
        "tags": clean_tags(request.tags),
        "attributes": dict(request.attributes or {}),
        "source": (request.source or "")[:500] or None,
        "created_at": now,
        "updated_at": now,
        "soft_bounces": 0,
    }


def _refresh(
    app: App, row: Row[Any], request: SubscribeRequest, *, now: datetime
) -> dict[str, Any]:
    """The row after a repeated post (made pending again), as ``_REFRESH`` parameters."""
    first_name = clean_first_name(request.first_name) or row.first_name
    timezone = (
        resolve_timezone(request.timezone, app.settings.default_timezone)
        if request.timezone
        else row.timezone
    )
    attributes = dict(row.attributes or {})
    attributes.update(request.attributes or {})
    return {
        "id": row.id,
        "first_name": first_name,
        "timezone": timezone,
        "tags": clean_tags(list(row.tags or []) + list(request.tags)),
        "attributes": attributes,
        "status": SubscriberStatus.PENDING.value,
        "updated_at": now,
    }


def _consent_values(
    subscriber_id: int, kind: ConsentKind, request: SubscribeRequest, *, now: datetime
) -> dict[str, Any]:
    """``_consent``'s columns, for a Core insert."""
    return {
        "subscriber_id": subscriber_id,
        "kind": kind.value,
        "at": now,
        "ip": request.ip,
        "user_agent": (request.user_agent or "")[:500] or None,
        "source": (request.source or "")[:500] or None,
        "consent_text": request.consent_text,
        "source_event_id": request.event_id,
    }


def pending_for_confirm_token(app: App, token: str, *, now: datetime) -> Subscriber:
    """Look up the subscriber a confirm token names (read only). Raises ``TokenError``."""
    public_id = read_confirm_token(
        token,
        keys=app.settings.secret_keys,
        now=now,
        max_age=timedelta(days=app.settings.confirm_token_max_age_days),
    )
    with app.sessions() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
    if subscriber is None:
        raise TokenError("this confirmation link is no longer valid; subscribe again")
    return subscriber


def confirm(app: App, token: str, *, ip: str | None, now: datetime) -> Subscriber:
    """Activate the subscriber and enroll them; repeats are harmless."""
    found = pending_for_confirm_token(app, token, now=now)
    with transaction(app.sessions) as session:
        subscriber = session.get(Subscriber, found.id, with_for_update=True)
        if subscriber is None:
            raise TokenError("this confirmation link is no longer valid; subscribe again")
        if subscriber.status == SubscriberStatus.ACTIVE.value:
            return subscriber
        if subscriber.status in (SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value):
            raise TokenError("this address can no longer be subscribed; contact the sender")
        if subscriber.status != SubscriberStatus.PENDING.value:
            # Unsubscribed after this link was sent: the unsubscribe wins. Asking again
            # through the form makes them pending and sends a fresh link.
            raise TokenError(
                "you unsubscribed after this link was sent; subscribe again to get a new one"
            )
        if is_suppressed(session, subscriber.email) in ("bounced", "complained"):
            raise TokenError("this address can no longer be subscribed; contact the sender")
        activate(app, session, subscriber, now=now, ip=ip, kind=ConsentKind.CONFIRMED)
        return subscriber


def activate(
    app: App,
    session: Session,
    subscriber: Subscriber,
    *,
    now: datetime,
    ip: str | None = None,
    kind: ConsentKind = ConsentKind.CONFIRMED,
    source: str | None = None,
    consent_text: str | None = None,
) -> None:
    """Make a subscriber active, lift an unsubscribe suppression, enroll. Does not commit.

    Besides ``on_confirm`` sequences, ``on_tag`` sequences matching the tags the
    subscriber already carries are joined now (a tag set while pending counts)."""
    subscriber.status = SubscriberStatus.ACTIVE.value
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    subscriber.sunset_notice_at = None
    subscriber.updated_at = now
    hashed = email_hash(subscriber.email)
    existing = session.scalar(select(Suppression).where(Suppression.email_hash == hashed))
    if existing is not None and existing.reason in ("unsubscribed", "forgotten", "inactive"):
        session.delete(existing)
    session.add(
        ConsentEvent(
            subscriber_id=subscriber.id,
            kind=kind.value,
            at=now,
            ip=ip,
            source=source,
            consent_text=consent_text,
        )
    )
    session.flush()
    sequences = app.library.sequences()
    enroll_on_confirm(session, subscriber.id, sequences, now=now)
    if subscriber.tags:
        on_tags_added(session, subscriber, subscriber.tags, sequences, now=now)
    subscribers_changed(session, "subscriber.confirmed", [subscriber.id], now=now)


def subscriber_for_unsubscribe_token(app: App, token: str) -> Subscriber | None:
    """Raises ``TokenError`` for a forged token; None when the subscriber was forgotten."""
    public_id = read_unsubscribe_token(token, keys=app.settings.secret_keys)
    with app.sessions() as session:
        return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def unsubscribe_by_token(
    app: App, token: str, *, ip: str | None, now: datetime, delivery_id: int | None = None
) -> None:
    """RFC 8058 target: takes effect at once; repeats and forgotten subscribers are no-ops.

    ``delivery_id`` (the link's ``?d=``, untrusted) is recorded only when it names an email
    of this subscriber; any other value is dropped and the unsubscribe still happens.
    """
    public_id = read_unsubscribe_token(token, keys=app.settings.secret_keys)
    with transaction(app.sessions) as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
        if subscriber is not None:
            withdraw(
                session,
                subscriber,
                now=now,
                ip=ip,
                source="unsubscribe link",
                delivery_id=_own_delivery(session, subscriber.id, delivery_id),
            )


def _own_delivery(session: Session, subscriber_id: int, delivery_id: int | None) -> int | None:
    """``delivery_id`` if that email went to this subscriber, else None."""
    if delivery_id is None:
        return None
    return session.scalar(
        select(Delivery.id).where(
            Delivery.id == delivery_id, Delivery.subscriber_id == subscriber_id
        )
    )


def unsubscribe_email(app: App, raw_email: str, *, now: datetime) -> None:
    email = normalize_email(raw_email)
    with transaction(app.sessions) as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if subscriber is None:
            raise SubscriberNotFound(email)
        withdraw(session, subscriber, now=now, source="cli")


def withdraw(
    session: Session,
    subscriber: Subscriber,
    *,
    now: datetime,
    ip: str | None = None,
    source: str | None = None,
    status: SubscriberStatus = SubscriberStatus.UNSUBSCRIBED,
    delivery_id: int | None = None,
) -> None:
    """Stop all marketing email to this subscriber. Does not commit.

    ``delivery_id`` names the email whose unsubscribe link was used (already checked to be
    this subscriber's); ``newsletter stats`` counts the withdrawal against that email.
    """
    if STATUS_SEVERITY.get(subscriber.status, 0) >= STATUS_SEVERITY[status.value]:
        return  # already withdrawn as strongly (a bounced address stays bounced)
    subscriber.status = status.value
    subscriber.unsubscribed_at = now
    subscriber.updated_at = now
    session.flush()
    suppress(session, subscriber.email, status.value, now=now)
    record_withdrawals(
        session,
        [Withdrawal(subscriber.id, status, source or status.value, ip, delivery_id)],
        now=now,
    )


def forget(app: App, raw_email: str, *, now: datetime) -> None:
    """Erase personal data; keep only a hashed suppression. Raises ``SubscriberNotFound``.

    The SendGrid event inbox is cleaned first, in the same transaction: no body left to
    apply or kept with a problem names the address any more (``forget_address``). That is
    done and committed even when no subscriber has the address (a second ``forget`` after
    SendGrid posted late events), before ``SubscriberNotFound``."""
    email = normalize_email(raw_email)
    with transaction(app.sessions) as session:
        # First: a drain locks an inbox row before the subscriber's, so this order cannot
        # deadlock with one.
        forget_address(session, email)
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if subscriber is not None:
            _forget_subscriber(session, subscriber, email, now=now)
    if subscriber is None:
        raise SubscriberNotFound(email)


def _forget_subscriber(
    session: Session, subscriber: Subscriber, email: str, *, now: datetime
) -> None:
    existing = session.scalar(
        select(Suppression).where(Suppression.email_hash == email_hash(email))
    )
    if existing is None:
        session.add(Suppression(email_hash=email_hash(email), reason="forgotten", created_at=now))
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .values(
            status=_skip_if_queued(),
            to_email=None,
            subscriber_id=None,
            updated_at=now,
        )
    )
    session.delete(subscriber)
    subscriber_forgotten(session, subscriber.public_id, now=now)


def _skip_if_queued() -> object:
    from sqlalchemy import case

    return case(
        (Delivery.status == DeliveryStatus.QUEUED.value, DeliveryStatus.SKIPPED.value),
        else_=Delivery.status,
    )
