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
    MetaData,
    String,
    Text,
    UniqueConstraint,
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


class ConsentKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"  # form post / CLI add
    IMPORTED = "imported"  # earlier consent from an imported list
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"


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
        # The drip planner reads "active and due" and "active and waiting" (NULL) from it.
        Index("ix_enrollments_due", "status", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
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
        Index("ix_deliveries_subscriber_item", "subscriber_id", "item_id"),
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
    # ``--where NAME=VALUE`` attribute conditions (all must hold); NULL means none.
    where_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ProviderEvent(Base):
    """One SendGrid event, stored once (deduplicated on id and on the logical key)."""

    __tablename__ = "provider_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sg_event_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    logical_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the logical key
    event: Mapped[str] = mapped_column(String(32), index=True)
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime]
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True
    )
    sg_message_id: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime]


class ServiceState(Base):
    """Small shared state across processes: the sending halt flag, the send-rate bucket."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    number: Mapped[float] = mapped_column(Float, default=0.0)
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
