"""SQLAlchemy 2.0 typed models: the whole schema in one place.

Times are aware UTC datetimes in ``*_at`` columns (``UTCDateTime`` normalises what
SQLite hands back). The migration in ``newsletter/migrations`` mirrors this file.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; always returns aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    INACTIVE = "inactive"  # no human engagement after a re-permission email (sunset)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # random, goes in tokens
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised
    first_name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    last_confirmation_at: Mapped[datetime | None]  # when the last confirmation email was queued
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    # When the sunset policy sent its "still want these?" email; NULL when none is pending.
    sunset_notice_at: Mapped[datetime | None]


class ConsentKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"  # form post / CLI add
    IMPORTED = "imported"  # earlier consent from an imported list
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    PREFERENCES = "preferences"  # topics or frequency changed in the preference centre


class ConsentEvent(Base):
    """The consent record: append-only, one row per consent-relevant act."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str | None] = mapped_column(String(500))  # form/page/list name
    consent_text: Mapped[str | None] = mapped_column(Text)  # text or version shown
    # A withdrawal through an email's unsubscribe link: the email (``deliveries.id``) it
    # came from, checked to be this subscriber's. No foreign key, like
    # ``provider_events.delivery_id``: the consent record must never block or follow a
    # change to the ledger.
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True
    )
    # A signup from a form source (``sources.yaml``): the sender's own event id.
    source_event_id: Mapped[str | None] = mapped_column(String(200))


class Suppression(Base):
    """An address that must get no marketing email. Kept by hash: survives ``forget``."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of normalised email
    reason: Mapped[str] = mapped_column(String(32))  # unsubscribed|bounced|complained|forgotten
    created_at: Mapped[datetime]


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"  # steps (or rotation) still to come
    DONE = "done"  # sequence finished and no rotation
    STOPPED = "stopped"  # subscriber left
    EXITED = "exited"  # an ``exit:`` trigger or ``sequence exit`` ended it


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "sequence", name="uq_enrollments_subscriber_sequence"),
        # The planner's batches, in the order they are read (``ORDER BY next_due_at, id``):
        # an index walk that stops after the batch, never a sort of the whole due set.
        Index(
            "ix_enrollments_active_due",
            "next_due_at",
            "id",
            postgresql_where=text("status = 'active' AND next_due_at IS NOT NULL"),
            sqlite_where=text("status = 'active' AND next_due_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Read through ``uq_enrollments_subscriber_sequence`` (subscriber_id is its prefix).
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    sequence: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)  # index of the next step
    last_item_id: Mapped[str | None] = mapped_column(String(300))  # last item planned
    next_due_at: Mapped[datetime | None]  # NULL when nothing is due any more
    last_sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The event that started this enrollment ({"name", "id", "properties"}), shown to its
    # steps' templates as ``event``; NULL when it started otherwise.
    event: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    exited_at: Mapped[datetime | None]


class DeliveryKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    DRIP = "drip"
    CAMPAIGN = "campaign"
    TEST = "test"
    REPERMISSION = "repermission"  # the sunset policy's "still want these?" email


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for due_at / next attempt
    LEASED = "leased"  # claimed by a worker until lease_expires_at, not yet handed over
    SENDING = "sending"  # handed to the provider in this chunk; outcome not yet recorded
    SENT = "sent"
    FAILED = "failed"  # permanent, or attempts exhausted
    UNKNOWN = "unknown"  # lease expired mid-send: fate unknown, never blindly resent
    SKIPPED = "skipped"  # suppressed / unsubscribed / campaign cancelled at claim time


class Delivery(Base):
    """The send ledger: one row per logical email; ``key`` makes each send happen once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_claim", "status", "due_at"),
        # ``claim_batch`` reads queued rows ``ORDER BY due_at, id``: an index walk that stops
        # after ``limit`` rows instead of sorting every queued row per claim (PostgreSQL).
        Index(
            "ix_deliveries_queued_due",
            "due_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # A subscriber's rows, by item; with ``kind`` the planner's history lookup reads
        # the index alone (migration 0011).
        Index("ix_deliveries_subscriber_item_kind", "subscriber_id", "item_id", "kind"),
        Index("ix_deliveries_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    to_email: Mapped[str | None] = mapped_column(String(320))  # only for test sends
    item_id: Mapped[str] = mapped_column(String(300))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    step: Mapped[int | None] = mapped_column(Integer)  # sequence step index, -1 for rotation
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    provider_message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    # The random part of this delivery's Message-ID (``compose.message_id_for``), set
    # when it is first claimed: with the id and the attempt it makes every Message-ID
    # unique worldwide and the same each time one attempt is rebuilt (issue 11).
    message_nonce: Mapped[str | None] = mapped_column(String(32))
    # Attention (migration 0007): the due time before the marketing cap first deferred it.
    deferred_from: Mapped[datetime | None]


class DripOutcome(Base):
    """A drip ledger row that reached its final state, for the planner to advance its
    enrollment (migration 0010: written by a trigger on ``deliveries``, deleted by the
    planner once handled; no foreign keys, so the trigger takes no lock on enrollments)."""

    __tablename__ = "drip_outcomes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(Integer)
    delivery_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    STALE = "stale"  # start passed the staleness limit: waits for resume
    SENT = "sent"
    CANCELLED = "cancelled"


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    item_id: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), index=True)
    include_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    exclude_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    scheduled_at: Mapped[datetime | None]  # UTC instant (global) or the first zone's instant
    local_time: Mapped[str | None] = mapped_column(String(32))  # wall clock "YYYY-MM-DD HH:MM"
    timezone: Mapped[str | None] = mapped_column(String(64))  # the marketer's zone for display
    pause_drips: Mapped[bool] = mapped_column(Boolean, default=False)
    audience_cursor: Mapped[int] = mapped_column(Integer, default=0)  # keyset: last subscriber id
    audience_frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    audience_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Attention (migration 0007): 3 high, 2 normal, 1 low; the topic of the preference centre.
    priority: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    topic: Mapped[str | None] = mapped_column(String(100))
    # ``--where NAME=VALUE`` attribute conditions (all must hold); NULL means none.
    where_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ProviderEvent(Base):
    """One SendGrid event, stored once (deduplicated on id and on the logical key)."""

    __tablename__ = "provider_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sg_event_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    logical_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the logical key
    event: Mapped[str] = mapped_column(String(32))  # not indexed: no query selects by it
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime]
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True
    )
    sg_message_id: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime]


class EventInbox(Base):
    """A verified SendGrid webhook body, stored as received; the drain applies it.

    Pending while ``applied_at`` and ``problem`` are both NULL (``ix_event_inbox_pending``).
    ``applied_at`` is set in the transaction that stores the events and acts on them;
    ``problem`` names why a body could not be applied (it is kept, and skipped)."""

    __tablename__ = "event_inbox"
    __table_args__ = (
        Index(
            "ix_event_inbox_pending",
            "id",
            postgresql_where=text("applied_at IS NULL AND problem IS NULL"),
            sqlite_where=text("applied_at IS NULL AND problem IS NULL"),
        ),
        # Pruning (applied_at below a cut-off) and ``forget`` (applied_at IS NULL).
        Index("ix_event_inbox_applied_at", "applied_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]
    problem: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ServiceState(Base):
    """Small shared state across processes: the sending halt flag, the send-rate bucket."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    number: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime]


# ---- outgoing webhooks (issue 14) ---------------------------------------------------------


class WebhookEndpoint(Base):
    """A receiver of outgoing webhooks: its URL, the event types it wants, its secret.

    The secret is kept as printed (it keys the HMAC). During a rotation the previous one
    also signs until ``previous_secret_expires_at``. ``lease_*`` is the per-endpoint claim
    (one worker sends to one endpoint at a time, in order); ``blocked_until`` holds the
    endpoint after a failed attempt until its oldest pending event is due again.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    blocked_until: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookEvent(Base):
    """The outbox: one row per reported change, written in the change's transaction.

    ``body`` is the exact JSON sent (every attempt sends the same bytes); ``public_id`` is
    its ``id``, the receiver's idempotency key.
    """

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its turn (per endpoint, oldest first) or a retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # kept failing for the retry period (or a ping that failed)


class WebhookDelivery(Base):
    """One event for one endpoint: attempts, outcome, the next attempt's time."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        # The sender reads an endpoint's pending rows oldest first.
        Index("ix_webhook_deliveries_queue", "endpoint_id", "status", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("webhook_events.id", ondelete="CASCADE"),
        index=True,
    )
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    first_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]  # the event's: the per-endpoint order
    updated_at: Mapped[datetime]


class EngagementEvent(Base):
    """What happened to an email after it left: opens, clicks, bounces, complaints, keeps.

    One row per observation, from any source (our pixel and redirects, SendGrid events,
    SMTP refusals, bounce reports read over IMAP). ``human`` and ``reason`` record the
    machine-vs-human classification; ``source_key`` (unique when set) makes an event that
    arrives twice (a SendGrid retry, a bounce report read again) count once. No foreign
    key to the ledger, like ``provider_events.delivery_id``.
    """

    __tablename__ = "engagement_events"
    __table_args__ = (Index("ix_engagement_events_subscriber_at", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16), index=True)  # open|click|bounce|...
    human: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # tracking|sendgrid|smtp|report|keep
    link_index: Mapped[int | None] = mapped_column(Integer)
    source_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    at: Mapped[datetime]


class DeliveryLink(Base):
    """The links of one sent email, by index: the only targets ``/t/c/{token}`` redirects to."""

    __tablename__ = "delivery_links"

    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    link_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)


class BounceReport(Base):
    """A bounce or complaint report read from the bounce mailbox, stored once by its key."""

    __tablename__ = "bounce_reports"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    report_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of Message-ID/body
    kind: Mapped[str] = mapped_column(String(16))  # hard|soft|complaint|unparsed
    delivery_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    email_hash: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]


class SourceEvent(Base):
    """A form source's delivery already acted on: a repeated event id is a no-op."""

    __tablename__ = "source_events"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]


class DeliveryDeferral(Base):
    """One deferral of a ledger row by the marketing cap or a higher priority (append-only)."""

    __tablename__ = "delivery_deferrals"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        index=True,
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(500))


class SubscriberPreferences(Base):
    """What the preference centre saved: topics opted out of, and a frequency choice."""

    __tablename__ = "subscriber_preferences"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topics_off: Mapped[list[str]] = mapped_column(JSON, default=list)
    frequency: Mapped[str] = mapped_column(String(32), default="as_they_come")
    updated_at: Mapped[datetime]


class ApiKeyScope(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class ApiKey(Base):
    """A REST API key: only the SHA-256 of the secret is kept (the secret is shown once)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str] = mapped_column(String(8))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell keys apart
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SubscriberEvent(Base):
    """A custom event from the shop (``POST /api/v1/events``), stored once per ``key``."""

    __tablename__ = "subscriber_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # the caller's idempotency id
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime]
