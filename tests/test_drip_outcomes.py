"""The advance pass reads the ledger's outcome queue (``drip_outcomes``, filled by the
trigger of migration 0010), never the waiting enrollments: whatever code path records a
drip item's outcome, its enrollment is advanced once, and only it is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from newsletter.app import App
from newsletter.db import transaction
from newsletter.drip.planner import plan_drips
from newsletter.enrollment import enroll_on_confirm
from newsletter.models import Delivery, DripOutcome, Enrollment
from newsletter.settings import Settings
from tests.factories import add_subscriber

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # Monday 07:00 in Berlin


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    application = App(make_settings())
    yield application
    application.close()


def add(app: App, count: int) -> list[int]:
    ids = []
    with transaction(app.sessions) as session:
        for n in range(count):
            subscriber = add_subscriber(
                session, f"o{n}@example.org", timezone="Europe/Berlin", created_at=T0
            )
            enroll_on_confirm(session, subscriber.id, app.library.sequences(), now=T0)
            ids.append(subscriber.id)
    return ids


def record(app: App, subscriber_id: int, status: str, at: datetime) -> None:
    """The outcome of the subscriber's queued drip row, written in plain SQL (as any code
    path of the ledger would: the trigger, not the planner's caller, must notice it)."""
    with transaction(app.sessions) as session:
        session.execute(
            text(
                "UPDATE deliveries SET status = :status, sent_at = :sent, updated_at = :at "
                "WHERE subscriber_id = :sid AND status = 'queued' AND kind = 'drip'"
            ),
            {
                "status": status,
                "sent": at if status == "sent" else None,
                "at": at,
                "sid": subscriber_id,
            },
        )


def waiting(app: App) -> set[int]:
    with app.sessions() as session:
        return set(
            session.scalars(
                select(Enrollment.subscriber_id).where(
                    Enrollment.status == "active", Enrollment.next_due_at.is_(None)
                )
            )
        )


def queued_outcomes(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(DripOutcome)) or 0)


def test_only_the_enrollments_whose_item_has_an_outcome_are_advanced(app: App) -> None:
    ids = add(app, 3)
    assert plan_drips(app, T0)["planned"] == 3
    assert waiting(app) == set(ids)
    assert queued_outcomes(app) == 0
    idle = plan_drips(app, T0 + timedelta(minutes=1))
    assert (idle["advanced"], idle["planned"], idle["batches"]) == (0, 0, 2)

    record(app, ids[0], "sent", T0 + timedelta(minutes=2))
    record(app, ids[1], "failed", T0 + timedelta(minutes=3))
    assert queued_outcomes(app) == 2
    report = plan_drips(app, T0 + timedelta(minutes=4))
    assert report["advanced"] == 2
    assert queued_outcomes(app) == 0
    assert waiting(app) == {ids[2]}
    assert plan_drips(app, T0 + timedelta(minutes=5))["advanced"] == 0


def test_an_outcome_rewritten_does_not_queue_its_enrollment_twice(app: App) -> None:
    (sid,) = add(app, 1)
    plan_drips(app, T0)
    record(app, sid, "unknown", T0 + timedelta(minutes=1))
    with transaction(app.sessions) as session:  # unknown -> sent (the provider told us)
        session.execute(text("UPDATE deliveries SET status = 'sent' WHERE status = 'unknown'"))
    assert queued_outcomes(app) == 1
    assert plan_drips(app, T0 + timedelta(minutes=2))["advanced"] == 1


def test_an_outcome_of_an_enrollment_that_moved_on_is_dropped(app: App) -> None:
    (sid,) = add(app, 1)
    plan_drips(app, T0)
    with transaction(app.sessions) as session:  # stopped meanwhile (an unsubscribe)
        session.execute(
            text("UPDATE enrollments SET status = 'stopped' WHERE subscriber_id = :sid"),
            {"sid": sid},
        )
    record(app, sid, "skipped", T0 + timedelta(minutes=1))
    assert queued_outcomes(app) == 1
    report = plan_drips(app, T0 + timedelta(minutes=2))
    assert report["advanced"] == 0
    assert queued_outcomes(app) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_enrollment_another_transaction_holds_is_advanced_by_the_next_pass(
    app: App,
) -> None:
    first, second = add(app, 2)
    plan_drips(app, T0)
    record(app, first, "sent", T0 + timedelta(minutes=1))
    record(app, second, "sent", T0 + timedelta(minutes=1))
    holder = app.engine.connect()
    try:
        holder.begin()
        holder.execute(
            text("SELECT id FROM enrollments WHERE subscriber_id = :sid FOR UPDATE"),
            {"sid": first},
        )
        report = plan_drips(app, T0 + timedelta(minutes=2))
        assert report["advanced"] == 1
        assert queued_outcomes(app) == 1  # kept for the next pass
    finally:
        holder.rollback()
        holder.close()
    assert plan_drips(app, T0 + timedelta(minutes=3))["advanced"] == 1
    assert queued_outcomes(app) == 0
    with app.sessions() as session:
        planned = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        )
    assert planned == 2
