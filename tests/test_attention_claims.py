"""The marketing cap and priorities at claim time, on SQLite and PostgreSQL: who is leased,
who is moved (with the reason, in the ledger and in ``delivery_deferrals``), who is skipped;
and two PostgreSQL workers racing for one subscriber's last slot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
    pause_drips: bool = False,
) -> int:
    with transaction(app.sessions) as session:
        row = Campaign(
            name=name,
            item_id=item,
            state="sending",
            include_tags=[],
            exclude_tags=[],
            pause_drips=pause_drips,
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


def scheduled(
    app: App,
    *,
    name: str,
    at: datetime,
    include_tags: tuple[str, ...] = (),
    priority: int = 2,
    pause_drips: bool = False,
    local_time: str | None = None,
) -> None:
    """A scheduled campaign whose audience is not frozen yet (not in the ledger)."""
    with transaction(app.sessions) as session:
        session.add(
            Campaign(
                name=name,
                item_id="campaigns/seven-day-reset",
                state="scheduled",
                include_tags=list(include_tags),
                exclude_tags=[],
                pause_drips=pause_drips,
                audience_frozen=False,
                created_at=NOW,
                updated_at=NOW,
                scheduled_at=at,
                local_time=local_time,
                priority=priority,
            )
        )


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


def test_a_drip_gives_way_to_an_unfrozen_campaign_only_where_its_tags_match(app: App) -> None:
    """A scheduled campaign whose audience is not in the ledger yet competes, by its
    segment, for the subscribers its tags select (read only when such a campaign exists)."""
    vip, vip_e = subscriber(app, "vip@example.org", tags=["vip"])
    other, other_e = subscriber(app, "other@example.org", tags=["other"])
    scheduled(app, name="launch", at=NOW + timedelta(hours=5), include_tags=("vip",), priority=3)
    queue(app, drip(vip, vip_e), drip(other, other_e))
    with app.sessions() as session:
        ids = {r.subscriber_id: r.id for r in session.scalars(select(Delivery))}
    assert claim(app) == [ids[other]]
    status, _due, error = ledger(app)[f"drip:{vip_e}:tips/meet-your-ql"]
    assert status == "queued"
    assert error is not None
    assert "gives way to campaign launch (high priority)" in error


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


def test_a_row_moved_twice_remembers_the_due_time_it_was_first_moved_from(make_settings) -> None:  # type: ignore[no-untyped-def]
    """``deferred_from`` keeps the first due time over later moves: a campaign's staleness
    counts from when it was meant to go, not from its last postponement."""
    app = App(make_settings(campaign_stale_hours="96"))
    try:
        _moved_twice(app)
    finally:
        app.close()


def _moved_twice(app: App) -> None:
    sid, eid = subscriber(app, "twice@example.org")
    reset = campaign(app, "reset")
    queue(app, drip(sid, eid, "tips/walking", step=2, due=NOW - timedelta(hours=1)))
    sent(app, f"drip:{eid}:tips/walking", NOW - timedelta(hours=1))
    queue(app, camp(sid, reset))
    assert claim(app) == []  # the cap (1/24h) is full: moved
    key = f"campaign:{reset}:{sid}"
    first_move = ledger(app)[key][1]
    assert first_move > NOW
    # another email went out meanwhile: at its new due time the row is moved again
    queue(app, drip(sid, eid, step=1, due=first_move - timedelta(minutes=30)))
    sent(app, f"drip:{eid}:tips/meet-your-ql", first_move - timedelta(minutes=30))
    assert claim(app, now=first_move) == []
    with app.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.key == key)).one()
    assert row.due_at > first_move
    assert row.deferred_from == NOW


def test_a_batch_row_does_not_compete_with_its_own_batch(make_settings) -> None:  # type: ignore[no-untyped-def]
    """With room for two, a high-priority campaign row and a drip row claimed together
    both go: the campaign is not also an upcoming rival the drip must give way to."""
    app = App(make_settings(marketing_cap="2/24h"))
    try:
        sid, eid = subscriber(app, "pair@example.org")
        launch = campaign(app, "launch", priority=3)
        queue(app, drip(sid, eid), camp(sid, launch))
        assert len(claim(app)) == 2
    finally:
        app.close()


@pytest.mark.parametrize(("updated", "claimed"), [(timedelta(hours=1), 0), (timedelta(days=2), 1)])
def test_an_email_of_unknown_fate_counts_against_the_cap_within_its_period(
    app: App, updated: timedelta, claimed: int
) -> None:
    """An ``unknown`` email probably went out: it takes its slot from when its fate became
    unknown, until the cap's period (1/24h) has passed."""
    sid, eid = subscriber(app, f"unknown-{claimed}@example.org")
    queue(app, drip(sid, eid, "tips/walking", step=2, due=NOW - updated))
    with transaction(app.sessions) as session:
        session.execute(
            update(Delivery)
            .where(Delivery.key == f"drip:{eid}:tips/walking")
            .values(status="unknown", updated_at=NOW - updated)
        )
    queue(app, drip(sid, eid))
    assert len(claim(app)) == claimed


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_cannot_both_use_the_last_slot(app: App) -> None:
    """Worker A holds the drip row and the subscriber lock; worker B, finding the campaign
    row, does not wait for that lock (waiting could deadlock two claims): it leaves the
    row queued, untouched. B's next claim, after A's commit, sees A's lease and skips it."""
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
    thread.join(timeout=10)
    assert not thread.is_alive()  # did not wait for A's subscriber lock
    assert result["b"] == []
    assert ledger(app)[f"campaign:{reset}:{sid}"] == ("queued", NOW, None)
    a.commit()
    a.close()
    with transaction(app.sessions) as b:
        assert claim_batch(b, worker="b", limit=10, now=NOW, lease=LEASE, attention=hook) == []
    status, _due, error = ledger(app)[f"campaign:{reset}:{sid}"]
    assert status == "skipped"
    assert error is not None
    assert "marketing cap" in error


def deferrals(app: App) -> list[tuple[int, datetime, str]]:
    with app.sessions() as session:
        return [
            (d.delivery_id, d.until, d.reason) for d in session.scalars(select(DeliveryDeferral))
        ]


@pytest.fixture
def uncapped(make_settings) -> Iterator[App]:  # type: ignore[no-untyped-def]
    application = App(make_settings(marketing_cap="off"))
    yield application
    application.close()


HELD = "campaign sale (--pause-drips) claims the local day 2026-11-24"


def test_a_pause_drips_campaign_later_today_holds_the_drip_with_the_cap_off(
    uncapped: App,
) -> None:
    app = uncapped
    sid, eid = subscriber(app, "p1@example.org")
    sale = campaign(app, "sale", pause_drips=True)
    queue(app, drip(sid, eid), camp(sid, sale, due=NOW + timedelta(hours=10)))  # 19:00 UTC
    assert claim(app) == []
    status, due, error = ledger(app)[f"drip:{eid}:tips/meet-your-ql"]
    tomorrow = datetime(2026, 11, 25, 8, 0, tzinfo=NOW.tzinfo)  # the sequence's window opens
    assert (status, due, error) == ("queued", tomorrow, f"deferred: {HELD}")
    [(delivery_id, until, reason)] = deferrals(app)
    assert (until, reason) == (tomorrow, HELD)
    # The campaign goes that evening; the drip the next morning, not lost.
    assert len(claim(app, now=NOW + timedelta(hours=10))) == 1
    assert claim(app, now=tomorrow) == [delivery_id]


def test_a_sent_pause_drips_campaign_holds_the_rest_of_its_day(uncapped: App) -> None:
    app = uncapped
    sid, eid = subscriber(app, "p2@example.org")
    sale = campaign(app, "sale", pause_drips=True)
    queue(app, camp(sid, sale, due=NOW - timedelta(hours=8)))
    sent(app, f"campaign:{sale}:{sid}", NOW - timedelta(hours=8))  # 01:00 UTC
    queue(app, drip(sid, eid))
    assert claim(app) == []
    assert deferrals(app)[0][2] == HELD


def test_a_skipped_cancelled_opted_out_or_other_days_pause_campaign_holds_nothing(
    uncapped: App,
) -> None:
    app = uncapped
    sid, eid = subscriber(app, "p3@example.org")
    with transaction(app.sessions) as session:
        session.add(
            SubscriberPreferences(
                subscriber_id=sid, topics_off=["offers"], frequency="as_they_come", updated_at=NOW
            )
        )
    sale = campaign(app, "sale", pause_drips=True)  # its item's topic is offers
    other, oid = subscriber(app, "p4@example.org")
    late = campaign(app, "late", pause_drips=True)
    gone = campaign(app, "gone", pause_drips=True)
    off = campaign(app, "off", pause_drips=True)
    queue(
        app,
        camp(sid, sale, due=NOW + timedelta(hours=2)),
        drip(sid, eid),
        camp(other, late, due=NOW + timedelta(hours=15)),  # 00:00 on the 25th
        camp(other, gone, due=NOW + timedelta(hours=1)),
        camp(other, off, due=NOW + timedelta(hours=1)),
        drip(other, oid),
    )
    with transaction(app.sessions) as session:
        session.execute(
            update(Delivery).where(Delivery.campaign_id == gone).values(status="skipped")
        )
        session.execute(update(Campaign).where(Campaign.id == off).values(state="cancelled"))
    assert len(claim(app)) == 2
    assert deferrals(app) == []
    # The same campaign merely paused still holds the day: it may resume.
    third, tid = subscriber(app, "p5@example.org")
    queue(app, camp(third, off, due=NOW + timedelta(hours=1)), drip(third, tid))
    with transaction(app.sessions) as session:
        session.execute(update(Campaign).where(Campaign.id == off).values(state="paused"))
    assert claim(app) == []
    assert [r for _d, _u, r in deferrals(app)] == [
        "campaign off (--pause-drips) claims the local day 2026-11-24"
    ]


def test_an_unfrozen_campaign_holds_the_day_it_falls_on_in_each_zone(uncapped: App) -> None:
    app = uncapped
    here, here_e = subscriber(app, "utc@example.org", tags=["vip"])
    tokyo, tokyo_e = subscriber(app, "tokyo@example.org", tags=["vip"], timezone="Asia/Tokyo")
    _outside, out_e = subscriber(app, "out@example.org")
    # 20:00 UTC; 05:00 on the 25th in Tokyo
    scheduled(
        app, name="sale", at=NOW + timedelta(hours=11), include_tags=("vip",), pause_drips=True
    )
    queue(app, drip(here, here_e), drip(tokyo, tokyo_e), drip(_outside, out_e))
    with app.sessions() as session:
        ids = {r.subscriber_id: r.id for r in session.scalars(select(Delivery))}
    assert sorted(claim(app)) == sorted([ids[tokyo], ids[_outside]])
    assert [(d, r) for d, _u, r in deferrals(app)] == [(ids[here], HELD)]


def test_a_local_time_campaign_holds_its_local_day_in_each_zone(uncapped: App) -> None:
    app = uncapped
    tokyo, tokyo_e = subscriber(app, "tokyo2@example.org", timezone="Asia/Tokyo")
    scheduled(
        app,
        name="sale",
        at=NOW + timedelta(hours=11),
        pause_drips=True,
        local_time="2026-11-24T20:00:00",  # 11:00 UTC in Tokyo: that Tokyo day
    )
    queue(app, drip(tokyo, tokyo_e))
    assert claim(app) == []
    [(_d, until, reason)] = deferrals(app)
    assert reason == HELD
    assert until == datetime(2026, 11, 24, 23, 0, tzinfo=NOW.tzinfo)  # 08:00 Tokyo, 25th


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("first", ["campaign", "drip"])
def test_two_workers_never_send_a_drip_on_a_pause_drips_campaigns_day(
    make_settings, first: str
) -> None:  # type: ignore[no-untyped-def]
    """Whichever worker takes the campaign row, the other's drip row is held (cap off)."""
    app = App(make_settings(marketing_cap="off"))
    try:
        sid, eid = subscriber(app, "race2@example.org")
        sale = campaign(app, "sale", pause_drips=True)
        early, later = NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)
        c_due, d_due = (early, later) if first == "campaign" else (later, early)
        queue(app, camp(sid, sale, due=c_due), drip(sid, eid, due=d_due))
        hook = attention_for(app)
        a = app.sessions()
        a.begin()
        taken = claim_batch(a, worker="a", limit=1, now=NOW, lease=LEASE, attention=hook)
        result: dict[str, list[str]] = {}

        def worker_b() -> None:
            with transaction(app.sessions) as b:
                rows = claim_batch(b, worker="b", limit=10, now=NOW, lease=LEASE, attention=hook)
                result["b"] = [r.kind for r in rows]

        thread = threading.Thread(target=worker_b)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()  # B never waits for A's subscriber lock
        assert result["b"] == []  # and takes nothing while A holds the subscriber
        a_kinds = [r.kind for r in taken]
        a.commit()
        a.close()
        worker_b()  # B's next claim decides what its first one left queued
        assert sorted(a_kinds + result["b"]) == ["campaign"]
        status, due, error = ledger(app)[f"drip:{eid}:tips/meet-your-ql"]
        assert (status, due) == ("queued", datetime(2026, 11, 25, 8, 0, tzinfo=NOW.tzinfo))
        assert error == f"deferred: {HELD}"
        assert len(deferrals(app)) == 1
    finally:
        app.close()
