"""The ledger's guards: outcomes never overwrite a row settled meanwhile."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.ledger import (
    claim_batch,
    mark_sending,
    record_results,
    release,
)
from newsletter.models import Delivery
from tests.conftest import NOW
from tests.factories import add_subscriber, add_subscribers, queue_deliveries


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


def row(app: App, delivery_id: int) -> Delivery:
    with app.sessions() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found


@pytest.mark.parametrize(
    ("retry_after", "due_in"),
    [
        pytest.param(120.0, 120.0, id="retry-after"),
        pytest.param(None, 60.0, id="short-pause"),  # the documented pause, not the constant
    ],
)
def test_not_attempted_is_requeued_without_counting_the_attempt(
    app: App, retry_after: float | None, due_in: float
) -> None:
    delivery_id = one_sending_row(app)
    result = SendResult(
        delivery_id, SendStatus.NOT_ATTEMPTED, error="not attempted: 429", retry_after=retry_after
    )
    with transaction(app.sessions) as session:
        record_results(session, [result], now=NOW, max_attempts=1)  # no attempt left
    requeued = row(app, delivery_id)
    assert (requeued.status, requeued.attempts, requeued.leased_by) == ("queued", 0, None)
    assert requeued.due_at == NOW + timedelta(seconds=due_in)
    assert requeued.error == "not attempted: 429"


def test_not_attempted_leaves_a_settled_row_alone(app: App) -> None:
    delivery_id = one_sending_row(app)
    with transaction(app.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(status="sent"))
    with transaction(app.sessions) as session:
        record_results(
            session, [SendResult(delivery_id, SendStatus.NOT_ATTEMPTED)], now=NOW, max_attempts=5
        )
    assert (row(app, delivery_id).status, row(app, delivery_id).attempts) == ("sent", 1)


def test_release_touches_only_rows_the_worker_still_holds(app: App) -> None:
    """A recorded outcome, or a row another worker holds, survives a release."""
    with transaction(app.sessions) as session:
        ids = queue_deliveries(session, add_subscribers(session, 3), item_id="tips/walking")
        claim_batch(session, worker="w", limit=10, now=NOW, lease=timedelta(minutes=5))
        mark_sending(session, ids[:2], now=NOW)
        record_results(
            session, [SendResult(ids[0], SendStatus.SENT, "pm-1")], now=NOW, max_attempts=5
        )
    with transaction(app.sessions) as session:
        release(session, ids, now=NOW, worker="someone-else")
    assert [row(app, i).status for i in ids] == ["sent", "sending", "leased"]
    with transaction(app.sessions) as session:
        release(session, ids, now=NOW, worker="w")
    assert [(row(app, i).status, row(app, i).attempts) for i in ids] == [
        ("sent", 1),
        ("queued", 0),
        ("queued", 0),
    ]


def test_an_outcome_shared_by_many_rows_is_recorded_for_those_in_flight_only(app: App) -> None:
    """One SendGrid request gives every email in it the same outcome (written by one
    UPDATE): a row an event settled meanwhile keeps its state; lone outcomes still land."""
    with transaction(app.sessions) as session:
        ids = queue_deliveries(session, add_subscribers(session, 5), item_id="tips/walking")
        claim_batch(session, worker="w", limit=10, now=NOW, lease=timedelta(minutes=5))
        mark_sending(session, ids[:4], now=NOW)
        session.execute(update(Delivery).where(Delivery.id == ids[1]).values(status="failed"))
    results = [
        SendResult(ids[0], SendStatus.SENT, "pm-shared"),
        SendResult(ids[1], SendStatus.SENT, "pm-shared"),
        SendResult(ids[2], SendStatus.SENT, "pm-shared"),
        SendResult(ids[3], SendStatus.FAILED, None, error="HTTP 400: bad"),
        SendResult(ids[4], SendStatus.UNKNOWN, None, error="no answer"),
    ]
    with transaction(app.sessions) as session:
        record_results(session, results, now=NOW, max_attempts=5)
    found = [row(app, i) for i in ids]
    assert [(r.status, r.provider_message_id, r.error) for r in found] == [
        ("sent", "pm-shared", None),
        ("failed", None, None),
        ("sent", "pm-shared", None),
        ("failed", None, "HTTP 400: bad"),
        ("unknown", None, "no answer"),
    ]
    assert [r.sent_at for r in found] == [NOW, None, NOW, None, None]
    assert [r.lease_expires_at for r in found] == [
        None,
        found[1].lease_expires_at,
        None,
        None,
        None,
    ]
