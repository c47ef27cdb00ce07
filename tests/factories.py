"""Rows for tests: subscribers and queued ledger rows, written through a session.

The functions add and flush but never commit: the caller owns the transaction
(``with transaction(app.sessions) as session: ...``). Emails built here come from a
counter, so two calls in one test never collide on the unique email column.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryKind, DeliveryStatus, Subscriber
from tests.conftest import NOW

_numbers = itertools.count()


def public_id_for(email: str) -> str:
    """A stable 32-character public id derived from *email* (unique as emails are)."""
    return hashlib.md5(email.encode(), usedforsecurity=False).hexdigest()


def add_subscriber(session: Session, email: str, **fields: Any) -> Subscriber:
    """Add one active UTC subscriber with *email*, created at ``NOW``; *fields* set any
    other column (``status``, ``timezone``, ``tags``, ``created_at``, ...)."""
    values: dict[str, Any] = {
        "public_id": public_id_for(email),
        "timezone": "UTC",
        "status": "active",
        "tags": [],
        "attributes": {},
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }
    subscriber = Subscriber(email=email, **values)
    session.add(subscriber)
    session.flush()
    return subscriber


def add_subscribers(
    session: Session,
    count: int,
    *,
    status: str = "active",
    timezone: str = "UTC",
    now: datetime = NOW,
    prefix: str = "r",
) -> list[int]:
    """Insert *count* subscribers in one statement and return their ids in order.

    Subscriber number ``n`` (from a counter shared by all calls) is
    ``<prefix><n>@example.org`` with the first name ``<Prefix><n>``, ``n`` zero-padded to six
    digits so that no name is part of another (``R1`` inside ``R10`` would stop the SendGrid
    mailer from batching their emails, which some tests count on).
    """
    numbers = [next(_numbers) for _ in range(count)]
    rows = [
        {
            "public_id": public_id_for(f"{prefix}{n:06d}@example.org"),
            "email": f"{prefix}{n:06d}@example.org",
            "first_name": f"{prefix.capitalize()}{n:06d}",
            "timezone": timezone,
            "status": status,
            "tags": [],
            "attributes": {},
            "created_at": now,
            "updated_at": now,
            "soft_bounces": 0,
        }
        for n in numbers
    ]
    if not rows:
        return []
    statement = insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def queue_deliveries(
    session: Session,
    subscriber_ids: Sequence[int],
    *,
    item_id: str,
    kind: DeliveryKind = DeliveryKind.DRIP,
    due_at: datetime = NOW,
    now: datetime = NOW,
) -> list[int]:
    """Queue one *item_id* delivery per subscriber in one statement (key
    ``test:<kind>:<item_id>:<subscriber id>``); return the ids in the order given."""
    rows = [
        {
            "key": f"test:{kind.value}:{item_id}:{subscriber_id}",
            "kind": kind.value,
            "subscriber_id": subscriber_id,
            "item_id": item_id,
            "status": DeliveryStatus.QUEUED.value,
            "attempts": 0,
            "due_at": due_at,
            "created_at": now,
            "updated_at": now,
        }
        for subscriber_id in subscriber_ids
    ]
    if not rows:
        return []
    statement = insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))
