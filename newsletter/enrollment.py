"""Enrollment of confirmed subscribers in ``enroll: on_confirm`` sequences."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.model import Sequence
from newsletter.models import Enrollment, EnrollmentStatus


def enroll_on_confirm(
    session: Session, subscriber_id: int, sequences: Iterable[Sequence], *, now: datetime
) -> list[str]:
    """Enroll in every ``on_confirm`` sequence not already joined; return their names.

    The first step is due at ``now``. Does not commit.
    """
    names = [s.name for s in sequences if s.enroll == "on_confirm"]
    if not names:
        return []
    existing = set(
        session.scalars(
            select(Enrollment.sequence).where(
                Enrollment.subscriber_id == subscriber_id, Enrollment.sequence.in_(names)
            )
        )
    )
    added = [n for n in names if n not in existing]
    for name in added:
        session.add(
            Enrollment(
                subscriber_id=subscriber_id,
                sequence=name,
                status=EnrollmentStatus.ACTIVE.value,
                position=0,
                next_due_at=now,
                created_at=now,
            )
        )
    return added
