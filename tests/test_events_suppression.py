"""The set-based act step leaves what ``subscriptions.withdraw`` would have left."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import (
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    Enrollment,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscriptions import withdraw
from newsletter.withdrawals import Withdrawal, record_withdrawals, suppress_many
from tests.conftest import NOW
from tests.test_events_store import add_delivery, add_subscriber


def _withdraw_in_bulk(session: Session, subscriber: Subscriber, status: SubscriberStatus) -> None:
    """What ``apply_suppressions`` does for one subscriber it moves to ``status``."""
    subscriber.status = status.value
    subscriber.unsubscribed_at = NOW
    subscriber.updated_at = NOW
    session.flush()
    record_withdrawals(session, [Withdrawal(subscriber.id, status, "sendgrid bounce")], now=NOW)
    suppress_many(session, {subscriber.email: status.value}, now=NOW)


def _state(app: App, email: str) -> dict[str, Any]:
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        consent = session.scalars(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber.id)
        ).all()
        return {
            "subscriber": (subscriber.status, subscriber.unsubscribed_at, subscriber.updated_at),
            "consent": sorted((c.kind, c.at, c.ip, c.source) for c in consent),
            "enrollments": sorted(
                (e.sequence, e.status, e.next_due_at)
                for e in session.scalars(
                    select(Enrollment).where(Enrollment.subscriber_id == subscriber.id)
                )
            ),
            "deliveries": sorted(
                (d.key.split(":", 1)[1], d.status, d.error)
                for d in session.scalars(
                    select(Delivery).where(Delivery.subscriber_id == subscriber.id)
                )
            ),
            "suppressions": sorted(
                (s.reason, s.created_at) for s in session.scalars(select(Suppression))
            ),
        }


def _prepare(app: App, email: str) -> None:
    subscriber_id = add_subscriber(app, email)
    with transaction(app.sessions) as session:
        session.add(
            Enrollment(
                subscriber_id=subscriber_id,
                sequence="tips",
                status="active",
                next_due_at=NOW,
                created_at=NOW,
            )
        )
    for n, status in enumerate((DeliveryStatus.QUEUED, DeliveryStatus.SENT)):
        add_delivery(app, subscriber_id, status=status, key=f"{email}:{n}")


def test_bulk_withdrawal_matches_withdraw(app: App) -> None:
    """Same subscriber, enrollment, consent, delivery and suppression rows either way."""
    states = []
    for email, bulk in (("one@example.org", False), ("two@example.org", True)):
        _prepare(app, email)
        with transaction(app.sessions) as session:
            subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
            if bulk:
                _withdraw_in_bulk(session, subscriber, SubscriberStatus.BOUNCED)
            else:
                withdraw(
                    session,
                    subscriber,
                    now=NOW,
                    source="sendgrid bounce",
                    status=SubscriberStatus.BOUNCED,
                )
        states.append(_state(app, email))
        with transaction(app.sessions) as session:
            session.execute(delete(Suppression))
    assert states[0] == states[1]
    assert states[1]["deliveries"][0][1:] == ("skipped", "subscriber bounced")
