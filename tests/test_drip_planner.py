"""The SQL planner on SQLite and PostgreSQL: late sends after downtime, pause_drips
campaigns, sequence edits, unknown zones, and resuming after a re-subscription."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.db import transaction
from newsletter.drip.planner import Catalog, plan_drips
from newsletter.enrollment import enroll_on_confirm
from newsletter.ledger import claim_batch
from newsletter.models import Campaign, Delivery, DeliveryDeferral, Enrollment
from newsletter.settings import Settings
from tests.factories import add_subscriber

SEQ = "back-pain-basics"
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # Monday 07:00 in Berlin


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    application = App(make_settings())
    yield application
    application.close()


def add(app: App, email: str, *, zone: str = "Europe/Berlin", tags: list[str] | None = None) -> int:
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(
            session, email, timezone=zone, tags=tags or [], created_at=T0, updated_at=T0
        )
        enroll_on_confirm(session, subscriber.id, app.library.sequences(), now=T0)
        return subscriber.id


def mark_sent(app: App, at: datetime) -> None:
    with transaction(app.sessions) as session:
        for row in session.scalars(select(Delivery).where(Delivery.status == "queued")):
            row.status, row.sent_at, row.updated_at = "sent", at, at


def drips(app: App, subscriber_id: int) -> list[tuple[str, datetime]]:
    with app.sessions() as session:
        rows = session.scalars(
            select(Delivery)
            .where(Delivery.subscriber_id == subscriber_id, Delivery.kind == "drip")
            .order_by(Delivery.id)
        )
        return [(r.item_id, r.due_at) for r in rows]


def enrollment(app: App, subscriber_id: int) -> Enrollment:
    with app.sessions() as session:
        return session.scalars(
            select(Enrollment).where(Enrollment.subscriber_id == subscriber_id)
        ).one()


def test_a_step_due_while_the_service_was_down_goes_out_late_inside_a_window(app: App) -> None:
    sid = add(app, "late@example.org")
    plan_drips(app, T0)
    mark_sent(app, T0)
    plan_drips(app, T0)  # advance: step 2 due 2 days later, 08:00 Berlin
    assert enrollment(app, sid).next_due_at == datetime(2026, 11, 4, 7, 0, tzinfo=UTC)
    # Down until 15:00 Berlin on the 5th: outside the window -> next morning, not skipped.
    afternoon = datetime(2026, 11, 5, 14, 0, tzinfo=UTC)
    report = plan_drips(app, afternoon)
    assert report["deferred"] == 1
    assert enrollment(app, sid).next_due_at == datetime(2026, 11, 6, 7, 0, tzinfo=UTC)
    morning = datetime(2026, 11, 6, 7, 5, tzinfo=UTC)
    assert plan_drips(app, morning)["planned"] == 1
    assert drips(app, sid)[-1] == ("tips/meet-your-ql", morning)


@pytest.mark.parametrize("cap", ["1/24h", "off"])
def test_a_pause_drips_campaign_moves_the_step_to_the_next_day(
    make_settings: Callable[..., Settings], cap: str
) -> None:
    """The planner plans the step; the claim holds it on the campaign's local day (whatever
    the cap) and it goes the next morning: deferred, with the reason, never lost."""
    app = App(make_settings(marketing_cap=cap))
    try:
        sid = add(app, "busy@example.org", tags=["vip"])
        other = add(app, "calm@example.org")
        plan_drips(app, T0)
        mark_sent(app, T0)
        plan_drips(app, T0)
        due = datetime(2026, 11, 4, 7, 0, tzinfo=UTC)
        with transaction(app.sessions) as session:
            session.add(
                Campaign(
                    name="sale",
                    item_id="campaigns/seven-day-reset",
                    state="scheduled",
                    include_tags=["vip"],
                    exclude_tags=[],
                    scheduled_at=datetime(2026, 11, 4, 15, 0, tzinfo=UTC),  # same local day
                    pause_drips=True,
                    created_at=T0,
                    updated_at=T0,
                )
            )
        report = plan_drips(app, due)
        assert report["planned"] == 2
        # The subscriber outside the segment is not held back; the one inside is.
        assert [(r.subscriber_id, r.item_id) for r in claim(app, due)] == [
            (other, "tips/meet-your-ql")
        ]
        next_morning = datetime(2026, 11, 5, 7, 0, tzinfo=UTC)
        assert drips(app, sid)[-1] == ("tips/meet-your-ql", next_morning)
        with app.sessions() as session:
            deferrals = [
                (d.subscriber_id, d.at, d.until, d.reason)
                for d in session.scalars(select(DeliveryDeferral))
            ]
        assert deferrals == [
            (
                sid,
                due,
                next_morning,
                "campaign sale (--pause-drips) claims the local day 2026-11-04",
            )
        ]
        assert [(r.subscriber_id, r.item_id) for r in claim(app, next_morning)] == [
            (sid, "tips/meet-your-ql")
        ]
    finally:
        app.close()


def claim(app: App, now: datetime) -> list[Delivery]:
    with transaction(app.sessions) as session:
        rows = claim_batch(
            session,
            worker="w",
            limit=100,
            now=now,
            lease=timedelta(minutes=5),
            attention=attention_for(app),
        )
        session.expunge_all()
        return rows


def test_an_edited_sequence_never_resends_and_continues_after_the_last_item(app: App) -> None:
    sid = add(app, "edit@example.org")
    plan_drips(app, T0)
    mark_sent(app, T0)
    sequence = app.library.sequence(SEQ)
    # The marketer swaps steps 2 and 3 while this subscriber waits for step 2.
    steps = list(sequence.steps)
    steps[1], steps[2] = steps[2], steps[1]
    edited = replace(sequence, steps=tuple(steps))
    base = Catalog.from_app(app)
    catalog = Catalog({SEQ: edited}, base.pool)
    plan_drips(app, T0, catalog=catalog)
    plan_drips(app, datetime(2026, 11, 5, 7, 0, tzinfo=UTC), catalog=catalog)
    mark_sent(app, datetime(2026, 11, 5, 7, 0, tzinfo=UTC))
    # Now put the original order back: the item just sent is not sent again.
    plan_drips(app, datetime(2026, 11, 5, 8, 0, tzinfo=UTC), catalog=base)
    plan_drips(app, datetime(2026, 11, 20, 7, 0, tzinfo=UTC), catalog=base)
    items = [item for item, _ in drips(app, sid)]
    assert items == ["system/welcome", steps[1].item_id, sequence.steps[3].item_id]
    assert len(items) == len(set(items))


def test_an_unknown_zone_falls_back_to_the_default_zone(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    sid = add(app, "mars@example.org", zone="Mars/Olympus")
    plan_drips(app, T0)
    mark_sent(app, T0)
    plan_drips(app, T0)
    assert enrollment(app, sid).next_due_at == datetime(2026, 11, 4, 7, 0, tzinfo=UTC)  # Berlin
    assert "unknown time zone 'Mars/Olympus'" in caplog.text


def test_a_returning_subscriber_resumes_without_repeats(app: App) -> None:
    sid = add(app, "back@example.org")
    plan_drips(app, T0)
    mark_sent(app, T0)
    with transaction(app.sessions) as session:
        row = session.scalars(select(Enrollment)).one()
        row.status, row.next_due_at = "stopped", None
    later = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with transaction(app.sessions) as session:
        assert enroll_on_confirm(session, sid, app.library.sequences(), now=later) == [SEQ]
    assert plan_drips(app, later)["planned"] == 1
    assert [item for item, _ in drips(app, sid)] == ["system/welcome", "tips/meet-your-ql"]
    assert enrollment(app, sid).position == 2
    assert timedelta(0) == drips(app, sid)[-1][1] - later
