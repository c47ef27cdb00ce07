"""The ``SEND_RATE`` cap, shared by every worker through one database row.

A token bucket kept in ``service_state`` (key ``send_rate``): ``number`` is the tokens
left (negative when callers have reserved ahead), ``updated_at`` the time it was last
refilled. ``acquire(n, now=...)`` refills, takes ``n`` tokens and returns how long the
caller must wait before sending them; taking them *is* the reservation, so callers that
each sleep their own wait send, together, at most ``rate`` messages per second plus one
second's burst. PostgreSQL serialises callers with ``SELECT ... FOR UPDATE``; SQLite
with its single writer (``BEGIN IMMEDIATE``, see ``newsletter.db``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from newsletter.models import ServiceState

STATE_KEY = "send_rate"


class SendRateLimiter:
    """Reserve sending capacity under a cap of ``rate`` messages per second (0: no cap)."""

    def __init__(self, sessions: sessionmaker[Session], rate: float) -> None:
        if rate < 0:
            raise ValueError(f"NEWSLETTER_SEND_RATE must be 0 or more, got {rate}")
        self._sessions = sessions
        self.rate = rate
        self.burst = max(1.0, rate)  # a full bucket holds one second of sending

    def acquire(self, n: int, *, now: datetime) -> float:
        """Reserve ``n`` messages; return the seconds to wait before sending them."""
        if n < 0:
            raise ValueError(f"cannot reserve a negative number of messages ({n})")
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now!r} given; pass an aware UTC datetime")
        if self.rate == 0 or n == 0:
            return 0.0
        with self._sessions() as session, session.begin():
            row = self._locked_row(session, now)
            elapsed = max(0.0, (now - row.updated_at).total_seconds())
            tokens = min(self.burst, row.number + elapsed * self.rate) - n
            row.number = tokens
            row.updated_at = max(now, row.updated_at)
            row.value = f"token bucket: {self.rate:g}/s"
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def _locked_row(self, session: Session, now: datetime) -> ServiceState:
        values = {
            "key": STATE_KEY,
            "value": f"token bucket: {self.rate:g}/s",
            "number": self.burst,
            "updated_at": now,
        }
        bind = session.get_bind()
        if bind.dialect.name == "postgresql":
            session.execute(postgresql.insert(ServiceState).values(values).on_conflict_do_nothing())
        else:
            session.execute(sqlite.insert(ServiceState).values(values).on_conflict_do_nothing())
        query = select(ServiceState).where(ServiceState.key == STATE_KEY).with_for_update()
        return session.execute(query).scalar_one()
