"""Act on bounces and complaints from SMTP and from bounce reports. Does not commit.

* Each fact is recorded once as an engagement event (its ``source_key``); a fact already
  recorded (the same report read again, the same refusal) does nothing more.
* The subscriber is found from the delivery the fact names. When the fact also names the
  recipient address, it must be that delivery's address: a report about someone else (or
  a forged one naming a guessed delivery id) suppresses nobody.
* ``hard`` -> ``bounced`` and ``complaint`` -> ``complained`` at once, through the same
  ``withdraw`` as the unsubscribe link (enrollments stopped, queued email skipped, the
  suppression list). ``soft`` adds one to ``soft_bounces``; the third in a row (a human
  open or click resets the count) makes the subscriber ``bounced``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.addresses import normalize_email
from newsletter.bounces.status import Severity
from newsletter.engagement import BOUNCE, COMPLAINT, SOFT_BOUNCE, Engagement, record
from newsletter.errors import InvalidEmailError
from newsletter.events.policy import SOFT_BOUNCE_LIMIT
from newsletter.models import Delivery, Subscriber, SubscriberStatus
from newsletter.subscriptions import withdraw

log = logging.getLogger(__name__)

COMPLAINT_KIND = "complaint"


@dataclass(frozen=True)
class BounceFact:
    """One bounce or complaint about one email. ``kind``: hard, soft or complaint."""

    kind: str
    delivery_id: int | None
    recipient: str | None
    reason: str
    source: str  # smtp | report
    source_key: str


def apply_bounces(session: Session, facts: Sequence[BounceFact], *, now: datetime) -> list[str]:
    """Apply each fact; return what happened to each (for reports and logs)."""
    return [_apply_one(session, fact, now=now) for fact in facts]


def _apply_one(session: Session, fact: BounceFact, *, now: datetime) -> str:
    subscriber = _subscriber_for(session, fact)
    if subscriber is None:
        return "no matching subscriber"
    kind = {
        Severity.HARD.value: BOUNCE,
        Severity.SOFT.value: SOFT_BOUNCE,
        COMPLAINT_KIND: COMPLAINT,
    }[fact.kind]
    event = Engagement(
        kind=kind,
        at=now,
        human=kind == COMPLAINT,  # a person pressed "spam"; a bounce is a machine's answer
        reason=fact.reason[:200],
        source=fact.source,
        delivery_id=fact.delivery_id,
        subscriber_id=subscriber.id,
        source_key=fact.source_key,
    )
    if not record(session, [event]):
        return "already processed"
    source = f"{fact.source} {fact.kind}: {fact.reason}"[:500]
    if kind == BOUNCE:
        withdraw(session, subscriber, now=now, source=source, status=SubscriberStatus.BOUNCED)
        return f"{subscriber.email} bounced"
    if kind == COMPLAINT:
        withdraw(session, subscriber, now=now, source=source, status=SubscriberStatus.COMPLAINED)
        return f"{subscriber.email} complained"
    subscriber.soft_bounces = (subscriber.soft_bounces or 0) + 1
    subscriber.updated_at = now
    if subscriber.soft_bounces >= SOFT_BOUNCE_LIMIT:
        withdraw(session, subscriber, now=now, source=source, status=SubscriberStatus.BOUNCED)
        return f"{subscriber.email} bounced after {subscriber.soft_bounces} soft bounces"
    return f"{subscriber.email} soft bounce {subscriber.soft_bounces}"


def _subscriber_for(session: Session, fact: BounceFact) -> Subscriber | None:
    recipient = _normalized(fact.recipient)
    if fact.delivery_id is not None:
        subscriber_id = session.scalar(
            select(Delivery.subscriber_id).where(Delivery.id == fact.delivery_id)
        )
        subscriber = session.get(Subscriber, subscriber_id) if subscriber_id else None
        if subscriber is None:
            return None
        if fact.recipient is not None and recipient != subscriber.email:
            log.warning("bounce for delivery %s names another recipient; ignored", fact.delivery_id)
            return None
        return subscriber
    return None


def _normalized(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return normalize_email(address)
    except InvalidEmailError:
        return address.strip().lower()


def refusal_facts(results: Sequence[object]) -> list[BounceFact]:
    """Facts for SMTP results whose address was refused for good (550 5.1.1 ...)."""
    from newsletter.delivery.base import SendResult

    return [
        BounceFact(
            kind=Severity.HARD.value,
            delivery_id=r.delivery_id,
            recipient=None,
            reason=(r.error or "refused")[:200],
            source="smtp",
            source_key=f"smtp:{r.delivery_id}",
        )
        for r in results
        if isinstance(r, SendResult) and r.address_refused
    ]
