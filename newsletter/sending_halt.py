"""The cross-process "sending halted" flag (set on provider 401/403)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.models import ServiceState

HALT_KEY = "sending_halt"


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible fingerprint, so a changed key lifts the halt."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def halt_reason(session: Session, *, fingerprint: str | None = None) -> str | None:
    """The reason sending is halted, or None. A halt set for another key has lapsed."""
    row = session.get(ServiceState, HALT_KEY)
    if row is None:
        return None
    stored_fp, _, reason = row.value.partition("|")
    if fingerprint is not None and stored_fp and stored_fp != fingerprint:
        return None
    return reason


def set_halt(session: Session, reason: str, *, fingerprint: str, now: datetime) -> None:
    row = session.get(ServiceState, HALT_KEY)
    value = f"{fingerprint}|{reason}"
    if row is None:
        session.add(ServiceState(key=HALT_KEY, value=value, number=0.0, updated_at=now))
    else:
        row.value = value
        row.updated_at = now


def clear_halt(session: Session) -> bool:
    existed = session.scalar(select(ServiceState.key).where(ServiceState.key == HALT_KEY))
    session.execute(delete(ServiceState).where(ServiceState.key == HALT_KEY))
    return existed is not None
