"""The marketing cap and priorities at claim time, on SQLite and PostgreSQL: who is leased,
who is moved (with the reason, in the ledger and in ``delivery_deferrals``), who is skipped;
and two PostgreSQL workers racing for one subscriber's last slot."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.db import transaction
from newsletter.ledger import NewDelivery, claim_batch, enqueue
from newsletter.models import (
    Campaign,
    Delivery,
    DeliveryDeferral,
    DeliveryKind,
    Enrollment,
    SubscriberPreferences,
)
from tests.conftest import NOW
from tests.factories import add_subscriber

LEASE = timedelta(minutes=5)


def campaign(
    app: App,
    name: str,
    *,
    priority: int = 2,
    item: str = "campaigns/seven-day-reset",
    topic: str | None = None,
) -> int:
    with transaction(app.sessions) as session:
        row = Campaign(
            name=name,
            item_id=item,
            state="sending",
            include_tags=[],
            exclude_tags=[],
            pause_drips=False,
            audience_cursor=0,
            audience_frozen=True,
            audience_count=1,
            created_at=NOW,
            updated_at=NOW,
            scheduled_at=NOW,
            started_at=NOW,
            priority=priority,
            topic=topic,
        )
        session.add(row)
        session.flush()
        return row.id


def subscriber(app: App, email: str, **fields: object) -> tuple[int, int]:
    """An active UTC subscriber enrolled in back-pain-basics past its welcome."""
    with transaction(app.sessions) as session:
        sid = add_subscriber(session, email, **fields).id
        enrollment = Enrollment(
            subscriber_id=sid,
            sequence="back-pain-basics",
            status="active",
            position=1,
            last_item_id="tips/meet-your-ql",
            next_due_at=None,
            created_at=NOW,
        )
        session.add(enrollment)
        session.flush()
        return sid, enrollment.id


def queue(app: App, *rows: NewDelivery) -> None:
    with transaction(app.sessions) as session:
        enqueue(session, list(rows), now=NOW)


def drip(
    sid: int,
    enrollment_id: int,
    item: str = "tips/meet-your-ql",
    *,
    step: int = 1,
    due: datetime = NOW,
) -> NewDelivery:
    return NewDelivery(
        key=f"drip:{enrollment_id}:{item}",
        kind=DeliveryKind.DRIP,
        item_id=item,
        due_at=due,
        subscriber_id=sid,
        enrollment_id=enrollment_id,
        step=step,
    )


def camp(sid: int, campaign_id: int, *, due: datetime = NOW) -> NewDelivery:
    return NewDelivery(
        key=f"campaign:{campaign_id}:{sid}",
        kind=DeliveryKind.CAMPAIGN,
        item_id="campaigns/seven-day-reset",
        due_at=due,
        subscriber_id=sid,
        campaign_id=campaign_id,
    )


def claim(app: App, *, now: datetime = NOW, limit: int = 100) -> list[int]:
    with transaction(app.sessions) as session:
        rows = claim_batch(
            session, worker="w", limit=limit, now=now, lease=LEASE, attention=attention_for(app)
        )
        return [r.id for r in rows]


def ledger(app: App) -> dict[str, tuple[str, datetime, str | None]]:
    with app.sessions() as session:
        return {r.key: (r.status, r.due_at, r.error) for r in session.scalars(select(Delivery))}


def sent(app: App, key: str, at: datetime) -> None:
    with transaction(app.sessions) as session:
        session.execute(
            update(Delivery).where(Delivery.key == key).values(status="sent", sent_at=at)
        )


def test_a_high_priority_campaign_wins_the_slot_and_the_drip_moves_to_the_next_window(
    app: App,
) -> None:
    sid, eid = subscriber(app, "a@example.org")
    launch = campaign(app, "launch", priority=3)
    queue(app, drip(sid, eid), camp(sid, launch))
    claimed = claim(app)
    rows = ledger(app)
    assert [rows[k][0] for k in (f"campaign:{launch}:{sid}", f"drip:{eid}:tips/meet-your-ql")] == [
        "leased",
        "queued",
    ]
    _status, due, error = rows[f"drip:{eid}:tips/meet-your-ql"]
    assert len(claimed) == 1
    assert due == datetime(2026, 11, 25, 9, 0, tzinfo=NOW.tzinfo)  # 24 h later, in 08-11 UTC
    assert error == "deferred: marketing cap 1/1d reached"
    with app.sessions() as session:
        [deferral] = session.scalars(select(DeliveryDeferral)).all()
    assert (deferral.subscriber_id, deferral.until, deferral.reason) == (
        sid,
        due,
        "marketing cap 1/1d reached",
    )


def test_a_drip_gives_way_to_a_high_priority_campaign_queued_for_later_today(app: App) -> None:
    sid, eid = subscriber(app, "b@example.org")
    launch = campaign(app, "launch", priority=3)
    queue(app, drip(sid, eid), camp(sid, launch, due=NOW + timedelta(hours=5)))
    assert claim(app) == []
    status, due, error = ledger(app)[f"drip:{eid}:tips/meet-your-ql"]
    assert status == "queued"
    assert error is not None
    assert "gives way to campaign launch (high priority)" in error
    assert due == datetime(2026, 11, 26, 8, 0, tzinfo=NOW.tzinfo)


def test_an_email_sent_within_the_period_holds_the_next_one(app: App) -> None:
    sid, eid = subscriber(app, "c@example.org")
    reset = campaign(app, "reset")
    queue(app, camp(sid, reset, due=NOW - timedelta(hours=3)))
    sent(app, f"campaign:{reset}:{sid}", NOW - timedelta(hours=3))
    queue(app, drip(sid, eid))
    assert claim(app) == []
    # free 21 h later (06:00 UTC), placed at the window's opening (08:00)
    assert ledger(app)[f"drip:{eid}:tips/meet-your-ql"][1] == datetime(
        2026, 11, 25, 8, 0, tzinfo=NOW.tzinfo
    )


def test_a_campaign_held_past_its_staleness_limit_is_skipped_and_counted(app: App) -> None:
    from newsletter.campaigns.views import show_campaign

    sid, eid = subscriber(app, "d@example.org")
    queue(app, drip(sid, eid, "tips/walking", step=2, due=NOW - timedelta(hours=1)))
    sent(app, f"drip:{eid}:tips/walking", NOW - timedelta(hours=1))
    reset = campaign(app, "reset")
    queue(app, camp(sid, reset))
    assert claim(app) == []
    status, _due, error = ledger(app)[f"campaign:{reset}:{sid}"]
    assert status == "skipped"
    assert error is not None
    assert "NEWSLETTER_CAMPAIGN_STALE_HOURS" in error
    assert show_campaign(app, "reset").attention == {"deferred": 0, "stale": 1, "opted_out": 0}


def test_the_welcome_is_exempt_but_counts(app: App) -> None:
    sid, eid = subscriber(app, "e@example.org")
    queue(app, drip(sid, eid, "tips/walking", step=2, due=NOW - timedelta(hours=1)))
    sent(app, f"drip:{eid}:tips/walking", NOW - timedelta(hours=1))
    queue(app, drip(sid, eid, "system/welcome", step=0))
    assert len(claim(app)) == 1
    assert ledger(app)[f"drip:{eid}:system/welcome"][0] == "leased"


def test_a_topic_opted_out_of_sends_nothing_of_it(app: App) -> None:
    sid, eid = subscriber(app, "f@example.org")
    with transaction(app.sessions) as session:
        session.add(
            SubscriberPreferences(
                subscriber_id=sid, topics_off=["offers"], frequency="as_they_come", updated_at=NOW
            )
        )
    reset = campaign(app, "reset")
    queue(app, camp(sid, reset), drip(sid, eid))
    assert len(claim(app)) == 1
    rows = ledger(app)
    assert rows[f"campaign:{reset}:{sid}"][0] == "skipped"
    assert (
        rows[f"campaign:{reset}:{sid}"][2] == "opted out of topic 'offers' in the preference centre"
    )
    assert rows[f"drip:{eid}:tips/meet-your-ql"][0] == "leased"


def test_at_most_one_a_week_is_the_subscribers_own_cap(app: App) -> None:
    sid, eid = subscriber(app, "g@example.org")
    with transaction(app.sessions) as session:
        session.add(
            SubscriberPreferences(
                subscriber_id=sid, topics_off=[], frequency="weekly", updated_at=NOW
            )
        )
    queue(app, drip(sid, eid, "tips/walking", step=2, due=NOW - timedelta(days=2)))
    sent(app, f"drip:{eid}:tips/walking", NOW - timedelta(days=2))
    queue(app, drip(sid, eid))
    assert claim(app) == []
    assert ledger(app)[f"drip:{eid}:tips/meet-your-ql"][1] == NOW + timedelta(days=5)


@pytest.mark.parametrize("setting", ["off", "2/24h"])
def test_the_cap_setting_is_read(make_settings, setting: str) -> None:  # type: ignore[no-untyped-def]
    app = App(make_settings(marketing_cap=setting))
    try:
        sid, eid = subscriber(app, f"h-{setting[0]}@example.org")
        reset = campaign(app, "reset")
        queue(app, drip(sid, eid), camp(sid, reset))
        assert len(claim(app)) == 2
    finally:
        app.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_cannot_both_use_the_last_slot(app: App) -> None:
    """Worker A holds the drip row and the subscriber lock; worker B, holding the campaign
    row, waits for that lock and then sees A's lease: it defers instead of sending."""
    sid, eid = subscriber(app, "race@example.org")
    reset = campaign(app, "reset")
    queue(app, drip(sid, eid, due=NOW - timedelta(minutes=1)), camp(sid, reset))
    hook = attention_for(app)
    a = app.sessions()
    a.begin()
    first = claim_batch(a, worker="a", limit=1, now=NOW, lease=LEASE, attention=hook)
    assert [r.kind for r in first] == ["drip"]
    result: dict[str, list[int]] = {}

    def worker_b() -> None:
        with transaction(app.sessions) as b:
            rows = claim_batch(b, worker="b", limit=10, now=NOW, lease=LEASE, attention=hook)
            result["b"] = [r.id for r in rows]

    thread = threading.Thread(target=worker_b)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive()  # waiting on the subscriber's row lock
    a.commit()
    a.close()
    thread.join(timeout=10)
    assert result["b"] == []
    status, _due, error = ledger(app)[f"campaign:{reset}:{sid}"]
    assert status == "skipped"
    assert error is not None
    assert "marketing cap" in error
