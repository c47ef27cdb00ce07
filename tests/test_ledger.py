"""The ledger's guards (outcomes never overwrite a row settled meanwhile), the webhooks its
outcomes make, and the operator's and reports' calls (requeue, counts)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.ledger import (
    claim_batch,
    count_by_status,
    mark_sending,
    record_results,
    release,
    requeue_unknown,
    skip_withdrawn,
)
from newsletter.models import Delivery, Subscriber, WebhookEndpoint, WebhookEvent
from tests.conftest import NOW
from tests.factories import add_subscriber, add_subscribers, queue_deliveries

HOUR = timedelta(hours=1)


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


def _claimed(app: App, n: int) -> list[int]:
    """``n`` rows claimed by worker ``w`` (leased, one attempt counted)."""
    with transaction(app.sessions) as session:
        ids = queue_deliveries(session, add_subscribers(session, n), item_id="tips/walking")
        claim_batch(session, worker="w", limit=10, now=NOW, lease=timedelta(minutes=5))
        return ids


def _email_events(app: App) -> list[tuple[str, int, str, str | None]]:
    with app.sessions() as session:
        bodies = [
            (t, json.loads(b)["data"]["email"])
            for t, b in session.execute(
                select(WebhookEvent.type, WebhookEvent.body).order_by(WebhookEvent.id)
            )
        ]
    return [(t, e["delivery_id"], e["status"], e.get("error")) for t, e in bodies]


def test_settled_outcomes_become_email_webhooks_and_only_those(app: App) -> None:
    """email.sent / email.failed for each row an outcome settles (a retry that ran out of
    attempts fails it); nothing for a row settled meanwhile, a retry still to come, a
    row never shown to the provider or an unknown outcome."""
    sent, failed, settled, gave_up, retried, skipped, unknown = _claimed(app, 7)
    with transaction(app.sessions) as session:
        session.add(
            WebhookEndpoint(
                url="https://hooks.example/in",
                events=["email.sent", "email.failed"],
                secret="s" * 32,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        session.execute(update(Delivery).where(Delivery.id == settled).values(status="sent"))
    with transaction(app.sessions) as session:
        record_results(
            session,
            [
                SendResult(sent, SendStatus.SENT, "pm-1"),
                SendResult(failed, SendStatus.FAILED, error="550 no such user"),
                SendResult(settled, SendStatus.SENT, "pm-3"),
                SendResult(gave_up, SendStatus.RETRY, error="timeout"),
                SendResult(skipped, SendStatus.NOT_ATTEMPTED),
                SendResult(unknown, SendStatus.UNKNOWN),
            ],
            now=NOW,
            max_attempts=1,
        )
        record_results(
            session, [SendResult(retried, SendStatus.RETRY, error="451")], now=NOW, max_attempts=5
        )
    assert _email_events(app) == [
        ("email.sent", sent, "sent", None),
        ("email.failed", failed, "failed", "550 no such user"),
        ("email.failed", gave_up, "failed", "gave up after 1 attempts: timeout"),
    ]
    assert [row(app, i).status for i in (retried, skipped, unknown)] == [
        "queued",
        "queued",
        "unknown",
    ]


def test_without_a_listening_endpoint_outcomes_make_no_webhooks(app: App) -> None:
    (sent,) = _claimed(app, 1)
    with transaction(app.sessions) as session:
        session.add(
            WebhookEndpoint(
                url="https://hooks.example/in",
                events=["subscriber.created"],
                secret="s" * 32,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    with transaction(app.sessions) as session:
        record_results(
            session, [SendResult(sent, SendStatus.SENT, "pm-1")], now=NOW, max_attempts=5
        )
    assert _email_events(app) == []
    assert row(app, sent).status == "sent"


def test_mark_sending_without_a_worker_marks_every_row_given(app: App) -> None:
    mine, other = _claimed(app, 2)
    with transaction(app.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id == other).values(leased_by="x"))
    with transaction(app.sessions) as session:
        assert mark_sending(session, [], now=NOW) == []
        assert mark_sending(session, [], now=NOW, worker="w") == []
        assert mark_sending(session, [other, mine], now=NOW) == [other, mine]
    assert [(row(app, i).status, row(app, i).lease_expires_at) for i in (mine, other)] == [
        ("sending", NOW + timedelta(minutes=5)),
        ("sending", NOW + timedelta(minutes=5)),
    ]


def test_skip_withdrawn_of_rows_no_longer_leased_is_empty(app: App) -> None:
    (gone,) = _claimed(app, 1)
    with transaction(app.sessions) as session:
        mark_sending(session, [gone], now=NOW)
        session.execute(update(Subscriber).values(status="unsubscribed"))
    with transaction(app.sessions) as session:
        assert skip_withdrawn(session, [gone], now=NOW) == []
    assert row(app, gone).status == "sending"


def test_requeue_unknown_resends_only_unknown_rows_last_touched_before(app: App) -> None:
    old, recent, sent = _claimed(app, 3)
    with transaction(app.sessions) as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([old, recent]))
            .values(status="unknown", lease_expires_at=NOW)
        )
        session.execute(update(Delivery).where(Delivery.id == old).values(updated_at=NOW - HOUR))
        session.execute(update(Delivery).where(Delivery.id == sent).values(status="sent"))
    later = NOW + HOUR
    with transaction(app.sessions) as session:
        assert requeue_unknown(session, now=later, before=NOW) == 1
    requeued = row(app, old)
    assert (
        requeued.status,
        requeued.due_at,
        requeued.lease_expires_at,
        requeued.leased_by,
        requeued.error,
        requeued.updated_at,
    ) == ("queued", later, None, None, "requeued by the operator after an unknown outcome", later)
    assert [row(app, i).status for i in (recent, sent)] == ["unknown", "sent"]
    with transaction(app.sessions) as session:
        assert requeue_unknown(session, now=later) == 1
    assert [row(app, i).status for i in (recent, sent)] == ["queued", "sent"]
    with transaction(app.sessions) as session:
        assert requeue_unknown(session, now=later) == 0


def test_count_by_status_counts_every_row_or_those_matching_the_filters(app: App) -> None:
    a, b, c = _claimed(app, 3)
    with transaction(app.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id == a).values(status="sent"))
        session.execute(update(Delivery).where(Delivery.id == b).values(item_id="tips/other"))
    with app.sessions() as session:
        assert count_by_status(session) == {"sent": 1, "leased": 2}
        assert count_by_status(session, item_id="tips/walking") == {"sent": 1, "leased": 1}
        assert count_by_status(session, item_id="tips/walking", status="leased") == {"leased": 1}
        assert count_by_status(session, item_id="tips/none") == {}
    assert c not in (a, b)


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
