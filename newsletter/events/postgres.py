"""The PostgreSQL side of storing a batch: one statement for the rows, two to reconcile.

A whole batch travels as one JSON parameter, unpacked by ``json_to_recordset``: the
statement text is the same for every batch (psycopg and the server reuse its parse),
and no per-row placeholders are rendered. SQLite keeps the portable statements in
``newsletter.events.store``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from newsletter.events.parsing import ParsedEvent
from newsletter.models import DeliveryStatus, UTCDateTime

# ORDER BY logical_key: one lock order on the unique keys for concurrent batches.
_INSERT = text(
    """
    INSERT INTO provider_events (sg_event_id, logical_key, event, email_hash, occurred_at,
                                 delivery_id, sg_message_id, payload, received_at)
    SELECT r.sg_event_id, r.logical_key, r.event, r.email_hash, r.occurred_at,
           r.delivery_id, r.sg_message_id, r.payload, :received_at
    FROM json_to_recordset(CAST(:rows AS json)) AS r(
        sg_event_id text, logical_key text, event text, email_hash text,
        occurred_at timestamptz, delivery_id bigint, sg_message_id text, payload json)
    ORDER BY r.logical_key
    ON CONFLICT DO NOTHING
    RETURNING logical_key
    """
).bindparams(bindparam("received_at", type_=UTCDateTime()))

# Locked in id order first, so concurrent batches reconciling the same rows queue.
_LOCK_OPEN = text(
    """
    SELECT id FROM deliveries
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = ANY(CAST(:open AS text[]))
    ORDER BY id
    FOR UPDATE
    """
)

_SETTLE = text(
    """
    UPDATE deliveries AS d
    SET status = :sent,
        provider_message_id = COALESCE(d.provider_message_id, v.message_id),
        sent_at = COALESCE(d.sent_at, v.first_at),
        error = 'reconciled from SendGrid events; was ' || d.status,
        lease_expires_at = NULL,
        updated_at = :now
    FROM json_to_recordset(CAST(:rows AS json)) AS v(id bigint, message_id text,
                                                      first_at timestamptz)
    WHERE d.id = v.id AND d.status = ANY(CAST(:open AS text[]))
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def insert_events(session: Session, events: Sequence[ParsedEvent], *, now: datetime) -> set[str]:
    """Insert the events new on both unique keys; return the logical keys inserted."""
    rows = [
        {
            "sg_event_id": e.sg_event_id,
            "logical_key": e.logical_key,
            "event": e.event,
            "email_hash": e.email_hash,
            "occurred_at": e.occurred_at.isoformat(),
            "delivery_id": e.delivery_id,
            "sg_message_id": e.sg_message_id,
            "payload": e.payload,
        }
        for e in events
    ]
    result = session.execute(_INSERT, {"rows": json.dumps(rows), "received_at": now})
    return set(result.scalars())


def settle_deliveries(
    session: Session,
    first_seen: Mapping[int, ParsedEvent],
    reconcilable: Sequence[str],
    *,
    now: datetime,
) -> int:
    """Mark the named deliveries still in ``reconcilable`` states as sent; return how many."""
    open_ids = session.scalars(
        _LOCK_OPEN, {"ids": sorted(first_seen), "open": list(reconcilable)}
    ).all()
    if not open_ids:
        return 0
    rows = [
        {
            "id": delivery_id,
            "message_id": first_seen[delivery_id].provider_message_id,
            "first_at": first_seen[delivery_id].occurred_at.isoformat(),
        }
        for delivery_id in open_ids
    ]
    session.execute(
        _SETTLE,
        {
            "rows": json.dumps(rows),
            "open": list(reconcilable),
            "sent": DeliveryStatus.SENT.value,
            "now": now,
        },
    )
    return len(open_ids)
