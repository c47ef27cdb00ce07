"""Use cases behind ``newsletter webhook`` (an API layer calls the same functions).

Each owns its transaction and returns a frozen value; errors are ``WebhookError``s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.errors import WebhookDeliveryNotFound, WebhookError, WebhookNotFound
from newsletter.models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from newsletter.webhooks.catalog import PING, check_event_types
from newsletter.webhooks.outbox import record_event
from newsletter.webhooks.queue import signing_secrets
from newsletter.webhooks.resolver import checked_address
from newsletter.webhooks.sender import PostResult, pin_or_error
from newsletter.webhooks.signing import signature_header
from newsletter.webhooks.targets import parse_target

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
ROTATION_GRACE = timedelta(hours=24)
MAX_DESCRIPTION = 500
# A ping is sent by ``webhook test`` itself; were it to die, the job sends it after this.
PING_HOLD = timedelta(hours=1)


@dataclass(frozen=True)
class WebhookView:
    id: int
    url: str
    description: str | None
    events: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    pending: int
    failed: int
    previous_secret_valid_until: datetime | None
    created_at: datetime

    @property
    def state(self) -> str:
        return "enabled" if self.enabled else "disabled"


@dataclass(frozen=True)
class NewSecret:
    """A webhook with its secret: shown once, at ``add`` and ``rotate-secret``."""

    webhook: WebhookView
    secret: str


@dataclass(frozen=True)
class DeliveryView:
    id: int
    webhook_id: int
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None  # pending only
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class PingResult:
    delivery: DeliveryView
    ok: bool


def new_secret() -> str:
    """URL-safe: ``whsec_`` and 43 characters of ``[A-Za-z0-9_-]`` (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_url(app: App, url: str) -> str:
    """The URL's form and (unless private addresses are allowed) where it resolves now."""
    target = parse_target(url.strip())
    checked_address(target, allow_private=app.settings.webhook_allow_private)
    return target.url


def add_webhook(
    app: App, url: str, events: list[str], *, description: str | None = None, now: datetime
) -> NewSecret:
    """Create an endpoint. Raises ``WebhookError`` (bad URL, event or description)."""
    types = check_event_types(events)
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise WebhookError(f"the description is longer than {MAX_DESCRIPTION} characters")
    checked = check_url(app, url)
    secret = new_secret()
    with transaction(app.sessions) as session:
        endpoint = WebhookEndpoint(
            url=checked,
            description=(description or "").strip() or None,
            events=types,
            secret=secret,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        session.add(endpoint)
        session.flush()
        return NewSecret(_view(session, endpoint, now=now), secret)


def list_webhooks(app: App, *, now: datetime) -> list[WebhookView]:
    with app.sessions() as session:
        endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
        return [_view(session, e, now=now) for e in endpoints]


def remove_webhook(app: App, webhook_id: int, *, now: datetime) -> WebhookView:
    """Delete the endpoint and its deliveries (events other endpoints still want stay)."""
    with transaction(app.sessions) as session:
        endpoint = _endpoint(session, webhook_id)
        view = _view(session, endpoint, now=now)
        session.delete(endpoint)
        session.flush()
        session.execute(
            WebhookEvent.__table__.delete().where(  # type: ignore[attr-defined]
                ~select(WebhookDelivery.id)
                .where(WebhookDelivery.event_id == WebhookEvent.id)
                .exists()
            )
        )
        return view


def enable_webhook(app: App, webhook_id: int, *, now: datetime) -> WebhookView:
    """Enable a disabled endpoint: its waiting events go out again, oldest first."""
    with transaction(app.sessions) as session:
        endpoint = _endpoint(session, webhook_id, lock=True)
        endpoint.enabled = True
        endpoint.disabled_reason = None
        endpoint.disabled_at = None
        endpoint.blocked_until = None
        endpoint.updated_at = now
        return _view(session, endpoint, now=now)


def rotate_secret(app: App, webhook_id: int, *, now: datetime) -> NewSecret:
    """A new secret signs from now on; the old one also signs for 24 hours."""
    secret = new_secret()
    with transaction(app.sessions) as session:
        endpoint = _endpoint(session, webhook_id, lock=True)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + ROTATION_GRACE
        endpoint.secret = secret
        endpoint.updated_at = now
        return NewSecret(_view(session, endpoint, now=now), secret)


def ping_webhook(app: App, webhook_id: int, *, now: datetime) -> PingResult:
    """Send a ``ping`` event to the endpoint now (once, out of the queue's order) and
    record the answer; a disabled endpoint is pinged too (to check it before enabling)."""
    with transaction(app.sessions) as session:
        endpoint = _endpoint(session, webhook_id)
        data = {"webhook": {"id": endpoint.id, "url": endpoint.url}}
        record_event(session, PING, data, now=now, endpoint_ids=[endpoint.id])
        delivery = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.id.desc())
            .limit(1)
        ).one()
        delivery.next_attempt_at = now + PING_HOLD
        body = session.get_one(WebhookEvent, delivery.event_id).body.encode()
        keys = signing_secrets(endpoint, now=now)
        url, delivery_id = endpoint.url, delivery.id
    sender = app.webhook_sender
    pinned = pin_or_error(sender, url)  # DNS checked again now, as the job does
    if isinstance(pinned, str):
        result = PostResult(False, error=pinned)
    else:
        stamp = int(app.clock().timestamp())
        result = sender.post(pinned, body, signature_header(keys, stamp, body))
    with transaction(app.sessions) as session:
        row = session.get_one(WebhookDelivery, delivery_id, with_for_update=True)
        row.attempts += 1
        row.first_attempt_at = row.last_attempt_at = now
        row.last_status_code = result.status_code
        row.last_error = result.error
        row.status = (
            WebhookDeliveryStatus.DELIVERED if result.ok else WebhookDeliveryStatus.FAILED
        ).value
        row.delivered_at = now if result.ok else None
        row.updated_at = now
        session.flush()
        return PingResult(_delivery_view(session, row), result.ok)


def list_deliveries(
    app: App, webhook_id: int | None = None, *, status: str | None = None, limit: int = 50
) -> list[DeliveryView]:
    """Newest first."""
    with app.sessions() as session:
        if webhook_id is not None:
            _endpoint(session, webhook_id)
        statement = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
        if webhook_id is not None:
            statement = statement.where(WebhookDelivery.endpoint_id == webhook_id)
        if status is not None:
            statement = statement.where(WebhookDelivery.status == status)
        return [_delivery_view(session, d) for d in session.scalars(statement)]


def retry_delivery(app: App, delivery_id: int, *, now: datetime) -> DeliveryView:
    """Send a ``failed`` delivery again (same event id, same body), as the next one due for
    its endpoint; its 3-day retry period starts again."""
    with transaction(app.sessions) as session:
        row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if row is None:
            raise WebhookDeliveryNotFound(delivery_id)
        if row.status != WebhookDeliveryStatus.FAILED.value:
            raise WebhookError(
                f"webhook delivery {delivery_id} is {row.status}; only failed deliveries "
                "can be retried"
            )
        row.status = WebhookDeliveryStatus.PENDING.value
        row.attempts = 0
        row.first_attempt_at = None
        row.next_attempt_at = now
        row.updated_at = now
        endpoint = session.get_one(WebhookEndpoint, row.endpoint_id)
        endpoint.blocked_until = None
        session.flush()
        return _delivery_view(session, row)


def _endpoint(session: Session, webhook_id: int, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, webhook_id, with_for_update=lock)
    if endpoint is None:
        raise WebhookNotFound(webhook_id)
    return endpoint


def _view(session: Session, endpoint: WebhookEndpoint, *, now: datetime) -> WebhookView:
    counts = dict(
        session.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .group_by(WebhookDelivery.status)
        ).all()
    )
    until = endpoint.previous_secret_expires_at
    return WebhookView(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        events=tuple(endpoint.events or ()),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        pending=int(counts.get(WebhookDeliveryStatus.PENDING.value, 0)),
        failed=int(counts.get(WebhookDeliveryStatus.FAILED.value, 0)),
        previous_secret_valid_until=until if until is not None and until > now else None,
        created_at=endpoint.created_at,
    )


def _delivery_view(session: Session, row: WebhookDelivery) -> DeliveryView:
    event = session.get_one(WebhookEvent, row.event_id)
    pending = row.status == WebhookDeliveryStatus.PENDING.value
    return DeliveryView(
        id=row.id,
        webhook_id=row.endpoint_id,
        event_id=event.public_id,
        type=event.type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if pending else None,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )
