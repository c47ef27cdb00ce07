"""The ledger's guards: outcomes never overwrite a row settled meanwhile."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.ledger import claim_batch, mark_sending, record_results
from newsletter.models import Delivery
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries


def one_sending_row(app: App) -> int:
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, "l@example.org")
        queue_deliveries(session, [subscriber.id], item_id="tips/walking")
        (row,) = claim_batch(session, worker="w", limit=10, now=NOW, lease=timedelta(minutes=5))
        mark_sending(session, [row.id], now=NOW)
        return row.id


def status(app: App, delivery_id: int) -> str:
    with app.sessions() as session:
        return session.scalars(select(Delivery.status).where(Delivery.id == delivery_id)).one()


def test_a_row_settled_by_an_event_is_not_overwritten_by_a_late_retry(app: App) -> None:
    delivery_id = one_sending_row(app)
    with transaction(app.sessions) as session:  # a provider event reconciles it first
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(status="sent"))
    with transaction(app.sessions) as session:
        record_results(
            session,
            [SendResult(delivery_id, SendStatus.RETRY, error="timeout")],
            now=NOW,
            max_attempts=5,
        )
    assert status(app, delivery_id) == "sent"
    with transaction(app.sessions) as session:
        record_results(
            session, [SendResult(delivery_id, SendStatus.UNKNOWN)], now=NOW, max_attempts=5
        )
    assert status(app, delivery_id) == "sent"


def test_outcomes_are_recorded_for_rows_in_flight(app: App) -> None:
    delivery_id = one_sending_row(app)
    with transaction(app.sessions) as session:
        record_results(
            session, [SendResult(delivery_id, SendStatus.SENT, "pm-1")], now=NOW, max_attempts=5
        )
    with app.sessions() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        assert (row.status, row.provider_message_id, row.sent_at) == ("sent", "pm-1", NOW)
