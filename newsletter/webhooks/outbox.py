"""The outbox: ``record_event`` writes an event, and one delivery row per endpoint that
wants it, in the caller's transaction (nothing here commits).

So an event exists exactly when the change it reports committed: a rolled-back change
leaves no event, a committed one always has its event. An event type no endpoint
subscribes to is not stored (an endpoint added later gets events from then on). A
disabled endpoint still gets its rows: they wait, in order, until it is enabled again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from newsletter.models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

Event = tuple[str, Mapping[str, Any]]  # (type, data)


def record_event(
    session: Session,
    type: str,
    data: Mapping[str, Any],
    *,
    now: datetime,
    endpoint_ids: Sequence[int] | None = None,
) -> int:
    """Record one event; return how many deliveries it fanned out to. Does not commit.

    ``endpoint_ids`` restricts it to those endpoints (``webhook test``'s ping).
    """
    return record_events(session, [(type, data)], now=now, endpoint_ids=endpoint_ids)


def record_events(
    session: Session,
    events: Sequence[Event],
    *,
    now: datetime,
    endpoint_ids: Sequence[int] | None = None,
) -> int:
    """``record_event`` for many events at once: two statements whatever their number."""
    if not events:
        return 0
    listeners = _listeners(session, endpoint_ids, {t for t, _ in events})
    wanted = [(t, d, listeners[t]) for t, d in events if listeners.get(t)]
    if not wanted:
        return 0
    ids = [_new_id() for _ in wanted]
    rows = [
        {"public_id": i, "type": t, "body": _body(i, t, d, now), "created_at": now}
        for i, (t, d, _) in zip(ids, wanted, strict=True)
    ]
    statement = insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True)
    event_ids = list(session.scalars(statement, rows))
    deliveries = [
        {
            "event_id": event_id,
            "endpoint_id": endpoint_id,
            "status": WebhookDeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for event_id, (_, _, targets) in zip(event_ids, wanted, strict=True)
        for endpoint_id in targets
    ]
    session.execute(insert(WebhookDelivery), deliveries)
    return len(deliveries)


def _listeners(
    session: Session, endpoint_ids: Sequence[int] | None, types: set[str]
) -> dict[str, list[int]]:
    """Endpoint ids per event type; targeted events go to the endpoints named."""
    statement = select(WebhookEndpoint.id, WebhookEndpoint.events).order_by(WebhookEndpoint.id)
    if endpoint_ids is not None:
        statement = statement.where(WebhookEndpoint.id.in_(list(endpoint_ids)))
    by_type: dict[str, list[int]] = {}
    for endpoint_id, subscribed in session.execute(statement):
        for name in types if endpoint_ids is not None else set(subscribed or ()) & types:
            by_type.setdefault(name, []).append(endpoint_id)
    return by_type


def _new_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _body(public_id: str, type: str, data: Mapping[str, Any], now: datetime) -> str:
    """The exact bytes every attempt sends: ``{"id", "type", "created_at", "data"}``."""
    payload = {
        "id": public_id,
        "type": type,
        "created_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": dict(data),
    }
    return json.dumps(payload, separators=(",", ":"), default=str)
