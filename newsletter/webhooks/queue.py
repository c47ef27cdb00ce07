"""The per-endpoint claim and the outcomes of outgoing webhooks (database edge).

One worker at a time sends to an endpoint: it leases the endpoint row (PostgreSQL:
``FOR UPDATE SKIP LOCKED``, so workers never wait for each other; SQLite: one writer),
commits, then sends that endpoint's pending events oldest first (``created_at``, then id).
The first failure stops the batch and holds the endpoint (``blocked_until``) until that
event's retry is due, so no newer event overtakes an older one. A worker that dies
mid-batch loses its lease when it expires; the next worker sends again what was not
recorded (at least once: receivers deduplicate on the event ``id``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session

from newsletter.models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from newsletter.webhooks.retries import next_attempt

log = logging.getLogger(__name__)

PENDING = WebhookDeliveryStatus.PENDING.value


@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    event_id: str
    body: str
    attempts: int
    first_attempt_at: datetime | None


@dataclass(frozen=True)
class Claim:
    endpoint_id: int
    url: str
    secrets: tuple[str, ...]  # newest first: every one signs
    outgoing: tuple[Outgoing, ...]


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    ok: bool
    status_code: int | None
    error: str | None


@dataclass
class Outcome:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: bool = False


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while it is still valid."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def claim_endpoint(
    session: Session, *, worker: str, now: datetime, lease: timedelta, limit: int
) -> Claim | None:
    """Lease one endpoint that has due events and load its oldest ones. Caller commits."""
    has_pending = exists().where(
        WebhookDelivery.endpoint_id == WebhookEndpoint.id,
        WebhookDelivery.status == PENDING,
        WebhookDelivery.next_attempt_at <= now,
    )
    statement = (
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.enabled.is_(True),
            or_(WebhookEndpoint.lease_expires_at.is_(None), WebhookEndpoint.lease_expires_at < now),
            or_(WebhookEndpoint.blocked_until.is_(None), WebhookEndpoint.blocked_until <= now),
            has_pending,
        )
        .order_by(WebhookEndpoint.lease_expires_at.is_not(None), WebhookEndpoint.lease_expires_at)
        .order_by(WebhookEndpoint.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True, of=WebhookEndpoint)
    endpoint = session.scalars(statement).first()
    if endpoint is None:
        return None
    endpoint.lease_expires_at = now + lease
    endpoint.leased_by = worker
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookEvent.public_id,
            WebhookEvent.body,
            WebhookDelivery.attempts,
            WebhookDelivery.first_attempt_at,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        .limit(limit)
    ).all()
    return Claim(
        endpoint_id=endpoint.id,
        url=endpoint.url,
        secrets=signing_secrets(endpoint, now=now),
        outgoing=tuple(Outgoing(r[0], r[1], r[2], r[3], r[4]) for r in rows),
    )


def record_attempts(
    session: Session,
    claim: Claim,
    attempts: Sequence[Attempt],
    *,
    worker: str,
    now: datetime,
    uniform: Callable[[float, float], float],
) -> Outcome:
    """Write what happened to each attempted event, release the endpoint. Caller commits.

    A delivery already settled meanwhile (another worker after a lost lease) is left alone.
    """
    outcome = Outcome()
    by_id = {o.delivery_id: o for o in claim.outgoing}
    blocked: datetime | None = None
    delivered: list[dict[str, object]] = []
    for attempt in attempts:
        sent = by_id[attempt.delivery_id]
        if attempt.ok:
            delivered.append(
                {
                    "b_id": attempt.delivery_id,
                    "b_attempts": sent.attempts + 1,
                    "b_first": sent.first_attempt_at or now,
                    "b_code": attempt.status_code,
                }
            )
            outcome.delivered += 1
            continue
        tries = sent.attempts + 1
        first = sent.first_attempt_at or now
        values: dict[str, object] = {
            "attempts": tries,
            "first_attempt_at": first,
            "last_attempt_at": now,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
            "updated_at": now,
        }
        due = next_attempt(tries, first_attempt_at=first, now=now, uniform=uniform)
        if due is None:
            values["status"] = WebhookDeliveryStatus.FAILED.value
            outcome.failed += 1
            outcome.disabled = True
        else:
            values["next_attempt_at"] = due
            blocked = due
            outcome.retrying += 1
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == attempt.delivery_id, WebhookDelivery.status == PENDING)
            .values(**values)
        )
    if delivered:  # one executemany for the batch
        table = cast(Table, WebhookDelivery.__table__)
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.status == PENDING)
            .values(
                status=WebhookDeliveryStatus.DELIVERED.value,
                attempts=bindparam("b_attempts"),
                first_attempt_at=bindparam("b_first"),
                last_attempt_at=now,
                last_status_code=bindparam("b_code"),
                last_error=None,
                delivered_at=now,
                updated_at=now,
            ),
            delivered,
        )
    endpoint_values: dict[str, object] = {"blocked_until": blocked, "updated_at": now}
    if outcome.disabled:
        last = attempts[-1]
        reason = f"kept failing for 3 days (last: {last.error}); run `newsletter webhook enable`"
        endpoint_values |= {"enabled": False, "disabled_reason": reason[:1000], "disabled_at": now}
        log.warning("webhook %d (%s) disabled: %s", claim.endpoint_id, _safe(claim.url), reason)
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == claim.endpoint_id)
        .values(**endpoint_values)
    )
    release_endpoint(session, claim.endpoint_id, worker=worker)
    return outcome


def release_endpoint(session: Session, endpoint_id: int, *, worker: str) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.leased_by == worker)
        .values(lease_expires_at=None, leased_by=None)
    )


def _safe(url: str) -> str:
    """The URL without its query string (which may carry a token) for logs."""
    return url.split("?", 1)[0]
