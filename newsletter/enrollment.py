"""Enrollment of confirmed subscribers in ``enroll: on_confirm`` sequences.

Called by ``activate`` (``POST /confirm/{token}``, ``subscribers add --confirmed``);
``subscribers import --confirmed`` writes the same rows in bulk.

Decisions (copied into the README):

* The first step is due ``after`` the confirmation (``after: 0d``: right away), and it
  ignores the send window: the welcome answers the subscriber's own action.
* A subscriber who unsubscribed and confirms again resumes where they left off: their
  ``stopped`` enrollment becomes active again with the next step due now (inside the
  window), and no item they already had is sent again. A ``done`` enrollment stays done.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.model import Sequence
from newsletter.models import Enrollment, EnrollmentStatus


def joins_on_confirm(sequence: Sequence) -> bool:
    return sequence.triggers.on_confirm or sequence.enroll == "on_confirm"


def new_enrollment(subscriber_id: int, sequence: Sequence, *, now: datetime) -> Enrollment:
    """A fresh enrollment: the first step is due ``after`` the confirmation."""
    return Enrollment(
        subscriber_id=subscriber_id,
        sequence=sequence.name,
        status=EnrollmentStatus.ACTIVE.value,
        position=0,
        next_due_at=now + sequence.steps[0].after,
        created_at=now,
    )


def enroll_new_subscribers(
    session: Session, subscriber_ids: Iterable[int], sequences: Iterable[Sequence], *, now: datetime
) -> None:
    """Bulk form for subscribers created just now (import): no enrollment exists yet."""
    wanted = [s for s in sequences if joins_on_confirm(s)]
    session.add_all(new_enrollment(sid, seq, now=now) for sid in subscriber_ids for seq in wanted)


def enroll_on_confirm(
    session: Session, subscriber_id: int, sequences: Iterable[Sequence], *, now: datetime
) -> list[str]:
    """Enroll in every ``on_confirm`` sequence not already joined (or resume a stopped
    one); return the names of the sequences joined or resumed. Does not commit."""
    wanted = {s.name: s for s in sequences if joins_on_confirm(s)}
    if not wanted:
        return []
    existing = {
        e.sequence: e
        for e in session.scalars(
            select(Enrollment).where(
                Enrollment.subscriber_id == subscriber_id, Enrollment.sequence.in_(list(wanted))
            )
        )
    }
    joined: list[str] = []
    for name, sequence in wanted.items():
        enrollment = existing.get(name)
        if enrollment is None:
            session.add(new_enrollment(subscriber_id, sequence, now=now))
            joined.append(name)
        elif enrollment.status == EnrollmentStatus.STOPPED.value:
            enrollment.status = EnrollmentStatus.ACTIVE.value
            enrollment.next_due_at = now  # the planner places it in the window
            joined.append(name)
    return joined
