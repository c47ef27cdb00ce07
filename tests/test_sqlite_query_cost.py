"""SQLite statements on the send path find their rows by the ids they concern, not by a
status: their work does not grow with the ledger (issue 19).

SQLite plans without statistics (nothing runs ``ANALYZE``): a filter ``status = 'sent'``
next to ``subscriber_id IN (the batch's)`` made it walk every sent row of the ledger by
status to find the few of the batch's subscribers; with a million sent rows a claim of
1,000 spent 0.3 s there. The work is counted in SQLite virtual-machine steps (its progress
handler), which no machine load changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.automation.enrolling import enroll, exit_sequence
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.events.parsing import ParsedEvent
from newsletter.events.store import reconcile
from newsletter.ledger import (
    claim_batch,
    mark_sending,
    record_results,
    release,
    skip_withdrawn,
    still_leased,
)
from newsletter.models import Campaign, Delivery, DeliveryKind, Enrollment, SubscriberStatus
from newsletter.withdrawals import Withdrawal, record_withdrawals
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries

STEP = 10  # VM instructions per progress-handler call
LEASE = timedelta(minutes=5)


@contextmanager
def counted_steps(session: Session) -> Iterator[list[int]]:
    """Count the SQLite VM steps (in units of ``STEP``) run on this session's connection."""
    raw: Any = session.connection().connection.driver_connection
    calls = [0]

    def tick() -> int:
        calls[0] += 1
        return 0

    raw.set_progress_handler(tick, STEP)
    try:
        yield calls
    finally:
        raw.set_progress_handler(None, STEP)


def add_history(app: App, count: int) -> None:
    """``count`` marketing emails sent to other subscribers three days ago: the ledger
    history a shop's earlier sends leave."""
    sent = NOW - timedelta(days=3)
    with transaction(app.sessions) as session:
        ids = add_subscribers(session, count, prefix="old")
        session.execute(
            insert(Delivery),
            [
                {
                    "key": f"old:{i}",
                    "kind": "drip",
                    "subscriber_id": i,
                    "item_id": "tips/meet-your-ql",
                    "status": "sent",
                    "attempts": 1,
                    "due_at": sent,
                    "created_at": sent,
                    "updated_at": sent,
                    "sent_at": sent,
                }
                for i in ids
            ],
        )


def claim_steps(app: App) -> int:
    """VM steps of one claim (cap rules included) of the queued rows; rolled back."""
    session = app.sessions()
    try:
        session.connection().exec_driver_sql("SELECT 1")
        with counted_steps(session) as calls:
            rows = claim_batch(
                session,
                worker="w",
                limit=100,
                now=NOW,
                lease=timedelta(minutes=5),
                attention=attention_for(app),
            )
        assert len(rows) == 20
        return calls[0]
    finally:
        session.rollback()
        session.close()


def test_a_claim_costs_the_same_with_a_hundred_times_the_history(app: App) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        ids = add_subscribers(session, 20, prefix="new")
        queue_deliveries(session, ids, item_id="tips/meet-your-ql")
    add_history(app, 100)
    small = claim_steps(app)
    add_history(app, 10_000)
    large = claim_steps(app)
    # Before the fix: ~40x more steps (every sent row visited); now the same probes.
    assert large <= small * 1.2 + 10, (small, large)


def chunk_steps(app: App, ids: list[int]) -> int:
    """VM steps of one chunk's writes (re-check, ``sending`` mark, outcomes); rolled back."""
    session = app.sessions()
    try:
        session.connection().exec_driver_sql("SELECT 1")
        with counted_steps(session) as calls:
            assert skip_withdrawn(session, ids, now=NOW) == []
            assert mark_sending(session, ids, now=NOW, worker="w") == ids
            record_results(
                session,
                [SendResult(i, SendStatus.SENT, provider_message_id="m") for i in ids],
                now=NOW,
                max_attempts=3,
            )
        return calls[0]
    finally:
        session.rollback()
        session.close()


def test_a_chunk_reads_its_own_rows_not_every_leased_row(app: App) -> None:
    """Marking a chunk of 10 costs the same whether 10 or 1,010 rows are leased: the
    statements look up the chunk's ids (before: every leased row, by status)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        mine = queue_deliveries(session, add_subscribers(session, 10, prefix="c"), item_id="x")
        others = queue_deliveries(session, add_subscribers(session, 1000, prefix="o"), item_id="x")
        lease(session, mine, "w")
    few = chunk_steps(app, mine)
    with transaction(app.sessions) as session:
        lease(session, others, "other")
    many = chunk_steps(app, mine)
    assert many <= few * 1.2 + 10, (few, many)


def lease(session: Session, ids: list[int], worker: str) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(status="leased", leased_by=worker, lease_expires_at=NOW + timedelta(minutes=5))
    )


def steps_of(app: App, work: Callable[[Session], object]) -> int:
    """VM steps of ``work`` in a transaction that is rolled back."""
    session = app.sessions()
    try:
        session.connection().exec_driver_sql("SELECT 1")
        with counted_steps(session) as calls:
            work(session)
        return calls[0]
    finally:
        session.rollback()
        session.close()


def queue_others(app: App, count: int) -> None:
    """``count`` queued emails of other subscribers (a campaign's audience, say)."""
    with transaction(app.sessions) as session:
        queue_deliveries(session, add_subscribers(session, count, prefix="q"), item_id="x")


def test_an_unsubscribe_costs_the_same_however_many_emails_are_queued(app: App) -> None:
    """Skipping a withdrawn subscriber's queued emails looks up that subscriber's rows
    (before: every queued row of the ledger, by status)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        (leaver,) = add_subscribers(session, 1, prefix="leaver")
        (mine,) = queue_deliveries(session, [leaver], item_id="x")

    def withdraw(session: Session) -> None:
        record_withdrawals(
            session, [Withdrawal(leaver, SubscriberStatus.UNSUBSCRIBED, "test")], now=NOW
        )
        assert session.get(Delivery, mine).status == "skipped"  # type: ignore[union-attr]

    few = steps_of(app, withdraw)
    queue_others(app, 1000)
    many = steps_of(app, withdraw)
    assert many <= few * 1.2 + 10, (few, many)


def test_leaving_a_sequence_costs_the_same_however_many_emails_are_queued(app: App) -> None:
    """``exit_sequence`` skips the enrollment's queued steps by its subscriber's rows
    (before: every queued row, by status; ``enrollment_id`` has no index)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    sequence = app.library.sequence("back-pain-basics")
    with transaction(app.sessions) as session:
        (member,) = add_subscribers(session, 1, prefix="member")
        enroll(session, member, sequence, now=NOW)
        enrollment = session.scalars(select(Enrollment.id)).one()
        session.execute(
            insert(Delivery).values(
                key=f"drip:{enrollment}:x",
                kind="drip",
                subscriber_id=member,
                enrollment_id=enrollment,
                item_id="x",
                status="queued",
                attempts=0,
                due_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )

    def leave(session: Session) -> None:
        assert exit_sequence(session, member, sequence.name, now=NOW)
        skipped = session.scalars(select(Delivery.status).where(Delivery.subscriber_id == member))
        assert list(skipped) == ["skipped"]

    few = steps_of(app, leave)
    queue_others(app, 1000)
    many = steps_of(app, leave)
    assert many <= few * 1.2 + 10, (few, many)


def event(delivery_id: int) -> ParsedEvent:
    return ParsedEvent(
        event="delivered",
        occurred_at=NOW,
        logical_key=f"delivered:{delivery_id}",
        email=None,
        email_hash=None,
        sg_event_id=f"e{delivery_id}",
        sg_message_id="m.filter",
        delivery_id=delivery_id,
        bounce_type=None,
        reason=None,
        payload={},
    )


def test_event_reconciling_costs_the_same_however_many_emails_are_queued(app: App) -> None:
    """SendGrid events settle their deliveries by id (before: every queued, failed,
    unknown and sending row, by status, whenever a batch names ten or more)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        ids = queue_deliveries(session, add_subscribers(session, 20, prefix="ev"), item_id="x")
    events = [event(i) for i in ids]

    def settle(session: Session) -> None:
        assert reconcile(session, events, now=NOW) == 20

    few = steps_of(app, settle)
    queue_others(app, 1000)
    many = steps_of(app, settle)
    assert many <= few * 1.2 + 10, (few, many)


def test_a_claim_beside_a_campaign_being_frozen_reads_its_own_subscribers(app: App) -> None:
    """While a sending campaign's audience is still being written to the ledger, a claim
    asks which of its subscribers already have a row: by those subscribers (before: every
    row the campaign has so far)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        ids = queue_deliveries(session, add_subscribers(session, 20, prefix="fz"), item_id="x")
        freezing = Campaign(
            name="freezing",
            item_id="campaigns/seven-day-reset",
            state="sending",
            include_tags=[],
            exclude_tags=[],
            audience_cursor=0,
            audience_frozen=False,
            created_at=NOW,
            updated_at=NOW,
            scheduled_at=NOW - timedelta(minutes=5),
            started_at=NOW,
        )
        session.add(freezing)
        session.flush()
        campaign_id = freezing.id

    def add_audience(count: int) -> None:
        with transaction(app.sessions) as session:
            others = add_subscribers(session, count, prefix="au")
            queue_deliveries(
                session,
                others,
                item_id="campaigns/seven-day-reset",
                kind=DeliveryKind.CAMPAIGN,
                due_at=NOW + timedelta(days=1),
            )
            session.execute(
                update(Delivery)
                .where(Delivery.subscriber_id.in_(others))
                .values(campaign_id=campaign_id)
            )

    def claim_twenty(session: Session) -> None:
        rows = claim_batch(
            session, worker="w", limit=100, now=NOW, lease=LEASE, attention=attention_for(app)
        )
        assert sorted(r.id for r in rows) == ids

    add_audience(100)
    few = steps_of(app, claim_twenty)
    add_audience(1000)
    many = steps_of(app, claim_twenty)
    assert many <= few * 1.2 + 10, (few, many)


def test_giving_rows_back_costs_the_same_however_many_rows_are_leased(app: App) -> None:
    """``still_leased`` and ``release`` look up their rows by id (before: every leased
    row, by status)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner has no statistics; PostgreSQL's has")
    with transaction(app.sessions) as session:
        mine = queue_deliveries(session, add_subscribers(session, 10, prefix="g"), item_id="x")
        others = queue_deliveries(session, add_subscribers(session, 1000, prefix="h"), item_id="x")
        lease(session, mine, "w")

    def give_back(session: Session) -> None:
        assert still_leased(session, mine, "w") == mine
        release(session, mine, now=NOW, worker="w")

    few = steps_of(app, give_back)
    with transaction(app.sessions) as session:
        lease(session, others, "other")
    many = steps_of(app, give_back)
    assert many <= few * 1.2 + 10, (few, many)
