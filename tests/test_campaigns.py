"""Campaign use cases and the ``plan-campaigns`` job on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from bench.bench_campaign_memory import insert_subscribers
from newsletter.app import App
from newsletter.campaigns.audience import audience_condition
from newsletter.campaigns.drafts import create_campaign, edit_campaign
from newsletter.campaigns.planner import freeze_audience, plan_campaigns
from newsletter.campaigns.schedule import Segment
from newsletter.campaigns.sending import schedule_campaign, send_campaign_now
from newsletter.campaigns.steering import cancel_campaign, pause_campaign, resume_campaign
from newsletter.campaigns.views import show_campaign
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.errors import CampaignError
from newsletter.jobs import JOBS
from newsletter.models import Campaign, Delivery, DeliveryKind, Subscriber
from newsletter.settings import Settings
from newsletter.subscriptions import unsubscribe_email
from tests import factories
from tests.conftest import NOW
from tests.mailers import RecordingMailer

ITEM = "campaigns/seven-day-reset"


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def app(settings: Settings, mailer: RecordingMailer) -> Iterator[App]:
    application = App(settings, mailer=mailer)
    yield application
    application.close()


AddSubscriber = Callable[..., int]


@pytest.fixture
def add_subscriber(app: App) -> AddSubscriber:
    def add(
        email: str, *, tags: Sequence[str] = (), timezone: str = "UTC", status: str = "active"
    ) -> int:
        with transaction(app.sessions) as session:
            subscriber = factories.add_subscriber(
                session,
                email,
                first_name="Sam",
                timezone=timezone,
                status=status,
                tags=list(tags),
                soft_bounces=0,
            )
            return subscriber.id

    return add


def run_tick(app: App, now: datetime) -> dict[str, dict[str, object]]:
    """What ``newsletter tick --now`` does: every job once, in order."""
    return {name: job(app, now) for name, job in JOBS.items()}


def campaign_rows(app: App, name: str) -> Counter[str]:
    with app.sessions() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Campaign.name == name, Delivery.kind == DeliveryKind.CAMPAIGN.value)
            .group_by(Delivery.status)
        )
        return Counter(dict(rows.all()))


def test_ten_thousand_paused_half_way_resumed_one_email_each(
    app: App, mailer: RecordingMailer
) -> None:
    """10,000 active subscribers (and some who are not) get exactly one email each through
    the plan-campaigns + deliver jobs, across a pause; whoever unsubscribed mid-way got none."""
    insert_subscribers(app.engine, 10_000)
    insert_subscribers(app.engine, 50, first=20_001, status="pending")
    view = create_campaign(
        app, ITEM, name="reset", include=(), exclude=(), pause_drips=False, now=NOW
    )
    assert view.audience == 10_000
    start = NOW + timedelta(hours=1)
    schedule_campaign(app, "reset", at=start.isoformat(), timezone=None, local_time=False, now=NOW)
    assert run_tick(app, NOW)["plan-campaigns"]["started"] == 0
    assert mailer.sent == []

    planned = plan_campaigns(app, start)
    assert planned == {"started": 1, "stale": 0, "queued": 10_000, "finished": 0}
    report = deliver_due(app, now=start, limit=5_000)
    assert report.outcomes == {"sent": 5_000}
    leaver = "reader10000@example.org"  # highest id: claimed last
    unsubscribe_email(app, leaver, now=start)
    pause_campaign(app, "reset", now=start)
    later = start + timedelta(minutes=5)
    assert run_tick(app, later)["deliver"]["claimed"] == 0
    assert show_campaign(app, "reset").state == "paused"
    assert len(mailer.sent) == 5_000

    resume_campaign(app, "reset", now=later)
    result = run_tick(app, later)
    assert result["deliver"]["sent"] == 4_999
    assert run_tick(app, later)["plan-campaigns"]["finished"] == 1

    recipients = Counter(m.to_email for m in mailer.sent)
    assert len(recipients) == 9_999
    assert set(recipients.values()) == {1}
    assert leaver not in recipients
    assert set(recipients) == {f"reader{n}@example.org" for n in range(1, 10_000)}
    view = show_campaign(app, "reset")
    assert (view.state, view.audience) == ("sent", 10_000)
    assert campaign_rows(app, "reset") == Counter({"sent": 9_999, "skipped": 1})


def test_a_subscriber_who_leaves_before_the_claim_gets_nothing(
    app: App, mailer: RecordingMailer, add_subscriber: AddSubscriber
) -> None:
    add_subscriber("stays@example.org")
    add_subscriber("leaves@example.org")
    create_campaign(app, ITEM, name="c", include=(), exclude=(), pause_drips=False, now=NOW)
    send_campaign_now(app, "c", now=NOW)
    unsubscribe_email(app, "leaves@example.org", now=NOW)
    run_tick(app, NOW)
    assert [m.to_email for m in mailer.sent] == ["stays@example.org"]
    assert campaign_rows(app, "c") == Counter({"sent": 1, "skipped": 1})


def test_stale_campaign_waits_for_resume(
    app: App, mailer: RecordingMailer, add_subscriber: AddSubscriber
) -> None:
    add_subscriber("one@example.org")
    create_campaign(app, ITEM, name="late", include=(), exclude=(), pause_drips=False, now=NOW)
    start = NOW + timedelta(hours=1)
    schedule_campaign(app, "late", at=start.isoformat(), timezone=None, local_time=False, now=NOW)
    after_outage = start + timedelta(hours=app.settings.campaign_stale_hours, minutes=1)
    assert run_tick(app, after_outage)["plan-campaigns"]["stale"] == 1
    run_tick(app, after_outage)
    assert show_campaign(app, "late").state == "stale"
    assert mailer.sent == []
    resume_campaign(app, "late", now=after_outage)
    run_tick(app, after_outage)
    run_tick(app, after_outage)
    assert [m.to_email for m in mailer.sent] == ["one@example.org"]
    assert show_campaign(app, "late").state == "sent"


def test_a_campaign_just_inside_the_staleness_limit_goes_out(
    app: App, mailer: RecordingMailer, add_subscriber: AddSubscriber
) -> None:
    add_subscriber("one@example.org")
    create_campaign(app, ITEM, name="ok", include=(), exclude=(), pause_drips=False, now=NOW)
    start = NOW + timedelta(hours=1)
    schedule_campaign(app, "ok", at=start.isoformat(), timezone=None, local_time=False, now=NOW)
    run_tick(app, start + timedelta(hours=app.settings.campaign_stale_hours, minutes=-1))
    assert len(mailer.sent) == 1


def test_local_time_sends_at_the_wall_time_of_each_zone_earliest_first(
    app: App, mailer: RecordingMailer, add_subscriber: AddSubscriber
) -> None:
    add_subscriber("ny@example.org", timezone="America/New_York")
    add_subscriber("tokyo@example.org", timezone="Asia/Tokyo")
    add_subscriber("berlin@example.org", timezone="Europe/Berlin")
    create_campaign(app, ITEM, name="local", include=(), exclude=(), pause_drips=False, now=NOW)
    view = schedule_campaign(
        app, "local", at="2026-12-01 09:00", timezone=None, local_time=True, now=NOW
    )
    tokyo, berlin, new_york = (
        datetime.fromisoformat(t)
        for t in ("2026-12-01T00:00+00:00", "2026-12-01T08:00+00:00", "2026-12-01T14:00+00:00")
    )
    assert view.scheduled_at == tokyo
    for moment, expected in (
        (tokyo - timedelta(minutes=1), []),
        (tokyo, ["tokyo@example.org"]),
        (berlin, ["tokyo@example.org", "berlin@example.org"]),
        (new_york - timedelta(minutes=1), ["tokyo@example.org", "berlin@example.org"]),
    ):
        run_tick(app, moment)
        assert [m.to_email for m in mailer.sent] == expected
        assert show_campaign(app, "local").state == ("scheduled" if not expected else "sending")
    run_tick(app, new_york)
    run_tick(app, new_york)
    assert mailer.sent[-1].to_email == "ny@example.org"
    assert show_campaign(app, "local").state == "sent"


def test_cancel_keeps_what_was_sent_and_skips_the_rest(app: App, mailer: RecordingMailer) -> None:
    insert_subscribers(app.engine, 30)
    create_campaign(app, ITEM, name="c", include=(), exclude=(), pause_drips=False, now=NOW)
    send_campaign_now(app, "c", now=NOW)
    deliver_due(app, now=NOW, limit=10)
    view = cancel_campaign(app, "c", now=NOW)
    assert (view.state, view.counts) == ("cancelled", {"sent": 10, "skipped": 20})
    run_tick(app, NOW + timedelta(minutes=1))
    assert len(mailer.sent) == 10
    with pytest.raises(CampaignError, match="already cancelled; nothing to cancel"):
        cancel_campaign(app, "c", now=NOW)


def test_pause_resume_of_a_scheduled_campaign_returns_it_to_scheduled(
    app: App, add_subscriber: AddSubscriber
) -> None:
    add_subscriber("one@example.org")
    create_campaign(app, ITEM, name="p", include=(), exclude=(), pause_drips=False, now=NOW)
    schedule_campaign(app, "p", at="2026-12-01 09:00", timezone=None, local_time=False, now=NOW)
    assert pause_campaign(app, "p", now=NOW).state == "paused"
    assert plan_campaigns(app, NOW + timedelta(days=7))["started"] == 0
    assert resume_campaign(app, "p", now=NOW).state == "scheduled"
    with pytest.raises(CampaignError, match="only paused or stale campaigns can be resumed"):
        resume_campaign(app, "p", now=NOW)


def test_freezing_is_idempotent_and_resumes_from_its_cursor(app: App) -> None:
    """A crash after some batches (cursor rewound) or two planners never duplicate rows."""
    insert_subscribers(app.engine, 120)
    create_campaign(app, ITEM, name="f", include=(), exclude=(), pause_drips=False, now=NOW)
    with transaction(app.sessions) as session:
        session.execute(
            update(Campaign)
            .where(Campaign.name == "f")
            .values(state="sending", scheduled_at=NOW, started_at=NOW)
        )
        campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "f"))
    assert campaign_id is not None
    assert freeze_audience(app, campaign_id, now=NOW, batch_size=50) == 120
    with transaction(app.sessions) as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(audience_cursor=40, audience_frozen=False)
        )
    assert freeze_audience(app, campaign_id, now=NOW, batch_size=50) == 0
    view = show_campaign(app, "f")
    assert (view.audience, view.audience_frozen, view.counts) == (120, True, {"queued": 120})


TRICKY = ['a"b', "50%", "x_y", "ünï", "back", "back-pain", "b\\c"]


@pytest.mark.parametrize(
    "segment",
    [
        Segment(("back",)),
        Segment(("50%",)),
        Segment(("x_y",)),
        Segment(('a"b',)),
        Segment(("ünï", "b\\c")),
        Segment((), ("back",)),
        Segment(("back-pain",), ("x_y",)),
        Segment(("xy",)),
        Segment(("ba",)),
    ],
    ids=[
        "plain",
        "percent",
        "underscore",
        "quote",
        "unicode+backslash",
        "exclude",
        "both",
        "no-wildcard",
        "no-prefix",
    ],
)
def test_segment_sql_matches_whole_tags_only(
    app: App, add_subscriber: AddSubscriber, segment: Segment
) -> None:
    """The SQL segment agrees with the pure rule, even for tags with LIKE/JSON specials."""
    people = {
        f"p{n}@example.org": [TRICKY[n % len(TRICKY)], TRICKY[(n * 3) % len(TRICKY)]][: n % 3]
        for n in range(21)
    }
    for email, tags in people.items():
        add_subscriber(email, tags=tags)
    add_subscriber("gone@example.org", tags=["back"], status="unsubscribed")
    with app.sessions() as session:
        dialect = session.get_bind().dialect.name
        found = set(
            session.scalars(select(Subscriber.email).where(audience_condition(dialect, segment)))
        )
    assert found == {e for e, tags in people.items() if segment.matches(tags)}


def test_edit_and_refusals(app: App, add_subscriber: AddSubscriber) -> None:
    add_subscriber("back@example.org", tags=["back"])
    add_subscriber("desk@example.org", tags=["desk"])
    view = create_campaign(
        app, ITEM, name=None, include=("back",), exclude=(), pause_drips=False, now=NOW
    )
    assert (view.name, view.audience) == ("seven-day-reset", 1)
    again = create_campaign(
        app, ITEM, name=None, include=(), exclude=(), pause_drips=False, now=NOW
    )
    assert (again.name, again.audience) == ("seven-day-reset-2", 2)
    edited = edit_campaign(
        app, "seven-day-reset", include=("back", "desk"), pause_drips=True, now=NOW
    )
    assert (edited.audience, edited.pause_drips) == (2, True)
    with pytest.raises(CampaignError, match="no active subscriber matches"):
        edit_campaign(app, "seven-day-reset", include=("nobody",), now=NOW)
    with pytest.raises(CampaignError, match="transactional email"):
        create_campaign(
            app, "system/confirmation", name="x", include=(), exclude=(), pause_drips=False, now=NOW
        )
    send_campaign_now(app, "seven-day-reset", now=NOW)
    with pytest.raises(CampaignError, match="is sending and cannot be changed"):
        edit_campaign(app, "seven-day-reset", pause_drips=False, now=NOW)
    with pytest.raises(CampaignError, match="exists; pick another --name"):
        create_campaign(
            app, ITEM, name="seven-day-reset", include=(), exclude=(), pause_drips=False, now=NOW
        )


def local_west_campaign(app: App, add_subscriber: AddSubscriber) -> None:
    """'c2': 09:00 local time on 1 December for one Los Angeles subscriber (17:00 UTC)."""
    add_subscriber("la@example.org", tags=["west"], timezone="America/Los_Angeles")
    create_campaign(app, ITEM, name="c2", include=("west",), exclude=(), pause_drips=False, now=NOW)
    schedule_campaign(
        app,
        "c2",
        at="2026-12-01 09:00",
        timezone=None,
        local_time=True,
        now=datetime(2026, 11, 30, tzinfo=UTC),
    )


def test_an_edit_that_moves_a_local_time_start_into_the_past_is_refused(
    app: App, add_subscriber: AddSubscriber
) -> None:
    """An Auckland subscriber joining the segment would move the start to 2026-11-30 20:00 UTC,
    before the edit: refused, nothing changed, and the next tick does not make it stale."""
    local_west_campaign(app, add_subscriber)
    add_subscriber("akl@example.org", tags=["west"], timezone="Pacific/Auckland")
    edit_now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(CampaignError) as refused:
        edit_campaign(app, "c2", include=("west", "desk"), pause_drips=True, now=edit_now)
    assert str(refused.value) == (
        "campaign 'c2' not changed: 2026-12-01 09:00 in Pacific/Auckland (the earliest zone of "
        "the edited audience) is 2026-11-30 20:00 UTC, which would move the start from "
        "2026-12-01 17:00 UTC, in the past (now 2026-12-01 08:00 UTC); reschedule it with a "
        "later time (`newsletter campaign schedule c2 --at 'YYYY-MM-DD HH:MM' --local-time`) "
        "and edit again, or send it now with `newsletter campaign send c2`"
    )
    view = show_campaign(app, "c2")
    assert (view.state, view.scheduled_at, view.pause_drips, view.segment) == (
        "scheduled",
        datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
        False,
        Segment(("west",), ()),
    )
    run_tick(app, edit_now)
    assert show_campaign(app, "c2").state == "scheduled"


def test_an_edit_that_moves_a_local_time_start_earlier_but_ahead_is_kept(
    app: App, add_subscriber: AddSubscriber
) -> None:
    """Before 20:00 UTC on 30 November the Auckland start is still ahead: the edit goes in."""
    local_west_campaign(app, add_subscriber)
    add_subscriber("akl@example.org", tags=["west"], timezone="Pacific/Auckland")
    view = edit_campaign(app, "c2", pause_drips=True, now=datetime(2026, 11, 30, 19, tzinfo=UTC))
    assert (view.scheduled_at, view.pause_drips, view.audience) == (
        datetime(2026, 11, 30, 20, 0, tzinfo=UTC),
        True,
        2,
    )


def test_an_edit_that_moves_a_local_time_campaign_past_the_max_days_is_refused(
    app: App, add_subscriber: AddSubscriber
) -> None:
    """A later zone can push the last instant beyond NEWSLETTER_CAMPAIGN_MAX_SCHEDULE_DAYS."""
    add_subscriber("utc@example.org", tags=["far"])
    create_campaign(app, ITEM, name="far", include=("far",), exclude=(), pause_drips=False, now=NOW)
    last_day = NOW + timedelta(days=app.settings.campaign_max_schedule_days) - timedelta(hours=1)
    at = last_day.strftime("%Y-%m-%d %H:%M")
    schedule_campaign(app, "far", at=at, timezone=None, local_time=True, now=NOW)
    add_subscriber("pago@example.org", tags=["far"], timezone="Pacific/Pago_Pago")
    with pytest.raises(CampaignError, match="more than 365 days ahead") as refused:
        edit_campaign(app, "far", pause_drips=True, now=NOW)
    assert str(refused.value).startswith(f"campaign 'far' not changed: {at} in UTC")
    assert show_campaign(app, "far").pause_drips is False
