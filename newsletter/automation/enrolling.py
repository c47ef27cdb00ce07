"""Enroll and exit inside a caller's transaction (these functions never commit).

Decisions (copied into the README):

* Exits are applied before enrollments: an event that ends one sequence and starts
  another (``purchase``) does both, in one transaction.
* Only ``active`` subscribers are enrolled; exits apply whatever the status.
* Enrolling someone already in the sequence is a no-op. With ``reenroll: true`` a
  finished (``done``), exited or stopped enrollment starts again from the first step, with
  the new event's properties; the planner still never sends one item twice to one
  subscriber, so steps they already had are passed over.
* An exit marks the enrollment ``exited`` and skips its queued emails in the same
  transaction; the delivery claim re-checks the enrollment too, so an exit that commits
  before a step is claimed stops that step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.bound_lists import unindexed
from newsletter.content.model import Sequence
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from newsletter.webhooks.emit import sequences_ended

RESTARTABLE = (
    EnrollmentStatus.DONE.value,
    EnrollmentStatus.EXITED.value,
    EnrollmentStatus.STOPPED.value,
)
EXIT_SKIP_ERROR = "skipped: the enrollment exited before this email was claimed"


@dataclass
class Changes:
    """What one trigger did: sequences joined (or restarted) and sequences left."""

    enrolled: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)

    def add(self, other: Changes) -> None:
        self.enrolled += [n for n in other.enrolled if n not in self.enrolled]
        self.exited += [n for n in other.exited if n not in self.exited]


def enroll(
    session: Session,
    subscriber_id: int,
    sequence: Sequence,
    *,
    now: datetime,
    event: Mapping[str, Any] | None = None,
) -> str | None:
    """Join ``sequence``: ``"enrolled"``, ``"reenrolled"``, or None when nothing changed."""
    first_due = now + sequence.steps[0].after
    values = {
        "subscriber_id": subscriber_id,
        "sequence": sequence.name,
        "status": EnrollmentStatus.ACTIVE.value,
        "position": 0,
        "next_due_at": first_due,
        "created_at": now,
        "event": dict(event) if event is not None else None,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Enrollment).values(values)
    statement = statement.on_conflict_do_nothing(index_elements=["subscriber_id", "sequence"])
    if session.execute(statement.returning(Enrollment.id)).first() is not None:
        return "enrolled"
    if not sequence.triggers.reenroll:
        return None
    existing = session.scalars(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.sequence == sequence.name)
        .with_for_update()
    ).one()
    if existing.status not in RESTARTABLE:
        return None
    existing.status = EnrollmentStatus.ACTIVE.value
    existing.position = 0
    existing.last_item_id = None
    existing.next_due_at = first_due
    existing.exited_at = None
    existing.event = dict(event) if event is not None else None
    return "reenrolled"


def exit_sequence(
    session: Session, subscriber_id: int, name: str, *, now: datetime, reason: str = "manual"
) -> bool:
    """Leave sequence ``name``; True when an active enrollment was ended.

    Reported as ``sequence.exited`` (outgoing webhooks) in the same transaction, with
    ``reason``: ``manual`` (``sequence exit``), ``tag`` or ``event`` (an ``exit:`` trigger)."""
    enrollment = session.scalar(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.sequence == name)
        .with_for_update()
    )
    if enrollment is None or enrollment.status != EnrollmentStatus.ACTIVE.value:
        return False
    enrollment.status = EnrollmentStatus.EXITED.value
    enrollment.next_due_at = None
    enrollment.exited_at = now
    session.execute(
        update(Delivery)
        .where(
            # Found by the subscriber's rows (indexed), not by every queued row: an
            # enrollment's rows are its subscriber's.
            Delivery.subscriber_id == enrollment.subscriber_id,
            Delivery.enrollment_id == enrollment.id,
            unindexed(session, Delivery.status) == DeliveryStatus.QUEUED.value,
        )
        .values(status=DeliveryStatus.SKIPPED.value, error=EXIT_SKIP_ERROR, updated_at=now)
    )
    session.flush()
    sequences_ended(session, "sequence.exited", [(subscriber_id, name)], now=now, reason=reason)
    return True


def on_tags_added(
    session: Session,
    subscriber: Subscriber,
    tags: Iterable[str],
    sequences: Iterable[Sequence],
    *,
    now: datetime,
) -> Changes:
    """Apply ``exit.on_tag`` and ``enroll.on_tag`` for tags just added."""
    added = set(tags)
    known = list(sequences)
    leave = [s for s in known if added & set(s.triggers.exit_tags)]
    join = [s for s in known if added & set(s.triggers.on_tags)]
    return _apply(session, subscriber, leave, join, now=now, event=None)


def on_event(
    session: Session,
    subscriber: Subscriber,
    event: Mapping[str, Any],
    sequences: Iterable[Sequence],
    *,
    now: datetime,
) -> Changes:
    """Apply ``exit.on_event`` and ``enroll.on_event`` for one event
    (``{"name", "id", "properties"}``, stored on the enrollments it starts)."""
    name = event["name"]
    known = list(sequences)
    leave = [s for s in known if name in s.triggers.exit_events]
    join = [s for s in known if name in s.triggers.on_events]
    return _apply(session, subscriber, leave, join, now=now, event=event)


def _apply(
    session: Session,
    subscriber: Subscriber,
    leave: list[Sequence],
    join: list[Sequence],
    *,
    now: datetime,
    event: Mapping[str, Any] | None,
) -> Changes:
    changes = Changes()
    for sequence in leave:
        reason = "event" if event is not None else "tag"
        if exit_sequence(session, subscriber.id, sequence.name, now=now, reason=reason):
            changes.exited.append(sequence.name)
    if subscriber.status != SubscriberStatus.ACTIVE.value:
        return changes
    for sequence in join:
        if enroll(session, subscriber.id, sequence, now=now, event=event) is not None:
            changes.enrolled.append(sequence.name)
    return changes
