"""Trigger use cases that own their transaction: custom events, manual enroll and exit."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter import attributes
from newsletter.addresses import normalize_email
from newsletter.app import App
from newsletter.automation.enrolling import Changes, enroll, exit_sequence, on_event
from newsletter.db import transaction
from newsletter.errors import SubscriberNotFound, TriggerError
from newsletter.models import Subscriber, SubscriberEvent, SubscriberStatus

EVENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_EVENT_ID = 200


class EventIdConflict(TriggerError):
    """An event id was used before for another event (another name or subscriber)."""


@dataclass(frozen=True)
class EventResult:
    email: str
    name: str
    id: str
    duplicate: bool
    changes: Changes = field(default_factory=Changes)


def check_event_name(name: str) -> str:
    if not EVENT_NAME.match(name):
        raise TriggerError(
            f"bad event name {name[:70]!r}: use lower-case letters, digits, '_', '.' or '-' "
            "(e.g. purchase), at most 64 characters"
        )
    return name


def record_event(
    app: App,
    *,
    email: str,
    name: str,
    properties: Mapping[str, Any],
    event_id: str,
    now: datetime,
) -> EventResult:
    """Store one event once per ``event_id`` and apply the sequences' triggers.

    The same id again changes nothing (``duplicate``); the same id for another event is
    refused (``EventIdConflict``). Raises ``SubscriberNotFound`` for an unknown address.
    """
    check_event_name(name)
    if not event_id or len(event_id) > MAX_EVENT_ID:
        raise TriggerError(f"the event id must be 1 to {MAX_EVENT_ID} characters")
    props = attributes.validate(properties, what="property")
    address = normalize_email(email)
    sequences = app.library.sequences()
    with transaction(app.sessions) as session:
        subscriber = session.scalar(
            select(Subscriber).where(Subscriber.email == address).with_for_update()
        )
        if subscriber is None:
            raise SubscriberNotFound(address)
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(SubscriberEvent)
            .values(
                key=event_id,
                subscriber_id=subscriber.id,
                name=name,
                properties=props,
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
        if session.execute(statement.returning(SubscriberEvent.id)).first() is None:
            earlier = session.scalars(
                select(SubscriberEvent).where(SubscriberEvent.key == event_id)
            ).one()
            if earlier.subscriber_id != subscriber.id or earlier.name != name:
                raise EventIdConflict(
                    f"event id {event_id[:80]!r} was already used for another event; "
                    "send each event with its own id (e.g. the order number)"
                )
            return EventResult(address, name, event_id, duplicate=True)
        payload = {"name": name, "id": event_id, "properties": props}
        changes = on_event(session, subscriber, payload, sequences, now=now)
        return EventResult(address, name, event_id, duplicate=False, changes=changes)


@dataclass(frozen=True)
class ManualOutcome:
    email: str
    outcome: str  # enrolled, reenrolled, already enrolled, exited, not enrolled, not active


def enroll_emails(
    app: App, sequence_name: str, emails: Iterable[str], *, now: datetime
) -> list[ManualOutcome]:
    """``sequence enroll``: join active subscribers to a sequence (any enroll mode)."""
    sequence = app.library.sequence(sequence_name)
    addresses = [normalize_email(e) for e in emails]
    outcomes: list[ManualOutcome] = []
    with transaction(app.sessions) as session:
        for address in addresses:
            subscriber = _find(session, address)
            if subscriber.status != SubscriberStatus.ACTIVE.value:
                outcomes.append(ManualOutcome(address, f"not active ({subscriber.status})"))
                continue
            done = enroll(session, subscriber.id, sequence, now=now)
            outcomes.append(ManualOutcome(address, done or "already enrolled"))
    return outcomes


def exit_emails(
    app: App, sequence_name: str, emails: Iterable[str], *, now: datetime
) -> list[ManualOutcome]:
    """``sequence exit``: end these subscribers' enrollments in a sequence."""
    sequence = app.library.sequence(sequence_name)
    addresses = [normalize_email(e) for e in emails]
    outcomes: list[ManualOutcome] = []
    with transaction(app.sessions) as session:
        for address in addresses:
            subscriber = _find(session, address)
            left = exit_sequence(session, subscriber.id, sequence.name, now=now)
            outcomes.append(ManualOutcome(address, "exited" if left else "not enrolled"))
    return outcomes


def _find(session: Any, address: str) -> Subscriber:
    subscriber: Subscriber | None = session.scalar(
        select(Subscriber).where(Subscriber.email == address)
    )
    if subscriber is None:
        raise SubscriberNotFound(address)
    return subscriber
