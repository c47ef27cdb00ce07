"""SendGrid's own events merged into ``engagement_events`` (opens and clicks with their
verdict, bounces and spam reports), so stats and timelines read one table.

Merged, never double-counted: each SendGrid event is mirrored once (its logical key is
the ``source_key``), and stats count emails, not events, so an email opened through our
pixel and through SendGrid's counts once. Only events naming one of our deliveries are
mirrored. SendGrid's ``sg_machine_open`` (Apple Mail Privacy Protection) is a machine
open; the time rule (within seconds of sending) applies too. The personal fields
(user agent, IP) are not kept by the webhook, so the agent rules do not apply here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.engagement import BOUNCE, CLICK, COMPLAINT, OPEN, SOFT_BOUNCE, Engagement, record
from newsletter.events.parsing import ParsedEvent
from newsletter.models import Delivery
from newsletter.tracking.classify import Hit, Kind, classify

MIRRORED = ("open", "click", "bounce", "spamreport")


def mirror_provider_events(session: Session, events: Sequence[ParsedEvent]) -> int:
    """Mirror newly stored SendGrid events; return how many were mirrored. No commit."""
    wanted = [e for e in events if e.event in MIRRORED and e.delivery_id is not None]
    if not wanted:
        return 0
    ids = sorted({e.delivery_id for e in wanted if e.delivery_id is not None})
    known = {
        row.id: row
        for row in session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.sent_at).where(
                Delivery.id.in_(ids)
            )
        )
    }
    rows: list[Engagement] = []
    for event in wanted:
        delivery = known.get(event.delivery_id or 0)
        if delivery is None or delivery.subscriber_id is None:
            continue
        if event.event in ("open", "click"):
            kind = Kind.OPEN if event.event == "open" else Kind.CLICK
            machine = event.payload.get("sg_machine_open") in (True, "true", 1)
            verdict = classify(
                Hit(kind, event.occurred_at, delivery.sent_at, provider_machine=machine)
            )
            human, reason = verdict.human, verdict.reason
            name = OPEN if kind is Kind.OPEN else CLICK
        elif event.event == "bounce":
            soft = (event.bounce_type or "").lower() == "blocked"
            human, reason = False, f"sendgrid {event.bounce_type or 'bounce'}"
            name = SOFT_BOUNCE if soft else BOUNCE
        else:
            human, reason, name = True, "sendgrid spamreport", COMPLAINT
        rows.append(
            Engagement(
                kind=name,
                at=event.occurred_at,
                human=human,
                reason=reason,
                source="sendgrid",
                delivery_id=event.delivery_id,
                subscriber_id=delivery.subscriber_id,
                source_key=event.logical_key,
            )
        )
    return len(record(session, rows))
