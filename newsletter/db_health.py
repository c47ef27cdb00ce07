"""Can the database take writes right now? A cheap probe for ``/healthz``.

Reaching the database is not enough: a PostgreSQL standby after a fail-over, a role or
session with ``default_transaction_read_only``, or a SQLite file opened read-only all
answer ``SELECT 1`` and refuse every subscription. The probe runs an ``UPDATE`` that
matches no row (``WHERE 1 = 0``) and rolls back: both databases check that the
transaction may write before looking for rows, so it fails exactly when a real write
would, yet it changes, locks and logs nothing (no WAL frame, no row lock).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

WRITE_PROBE = text("UPDATE deliveries SET id = id WHERE 1 = 0")


def database_problem(exc: BaseException) -> str:
    """One line about a database error, without the SQL or its parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0]}"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


def database_writable(sessions: sessionmaker[Session]) -> str | None:
    """``None`` when a write would succeed now, else why not (one line)."""
    try:
        with sessions() as session:
            try:
                session.execute(WRITE_PROBE)
            finally:
                session.rollback()
    except SQLAlchemyError as exc:
        return database_problem(exc)
    return None
