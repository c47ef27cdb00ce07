"""The cross-process "provider backoff": no worker claims email before a given time.

Set when the provider answers 429 (or 5xx) with ``Retry-After`` / ``X-RateLimit-Reset``:
the wait applies to the whole account, not only to the batch that got it, so every
worker stops claiming until it has passed (one row in ``service_state``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.models import ServiceState

BACKOFF_KEY = "provider_backoff"


def backoff_until(session: Session, *, now: datetime) -> tuple[datetime, str] | None:
    """``(until, reason)`` while a provider backoff is in force at ``now``, else None."""
    row = session.get(ServiceState, BACKOFF_KEY, populate_existing=True)
    if row is None:
        return None
    until = datetime.fromtimestamp(row.number, tz=UTC)
    return (until, row.value) if until > now else None


def set_backoff(session: Session, until: datetime, *, reason: str, now: datetime) -> None:
    """Claim nothing before ``until`` (a later backoff already stored wins). Caller commits."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(ServiceState).values(
        key=BACKOFF_KEY, value=reason, number=until.timestamp(), updated_at=now
    )
    later = statement.excluded.number > ServiceState.number
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ServiceState.key],
            set_={
                "number": case((later, statement.excluded.number), else_=ServiceState.number),
                "value": case((later, statement.excluded.value), else_=ServiceState.value),
                "updated_at": now,
            },
        )
    )


def clear_backoff(session: Session) -> tuple[datetime, str] | None:
    """Lift the provider backoff; return the ``(until, reason)`` it had, if one was stored.
    Caller commits."""
    row = session.get(ServiceState, BACKOFF_KEY, populate_existing=True)
    if row is None:
        return None
    stored = (datetime.fromtimestamp(row.number, tz=UTC), row.value)
    session.delete(row)
    return stored
