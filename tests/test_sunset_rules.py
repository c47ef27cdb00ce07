"""The sunset policy's rules one at a time, on seeded rows (``plan_sunset``, ``run_sunset``,
the job and the keep button), with the boundaries of each window exact."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import (
    Delivery,
    EngagementEvent,
    Subscriber,
    Suppression,
)
from newsletter.settings import Settings
from newsletter.sunset import (
    SunsetPlan,
    SunsetRefused,
    check_engagement_data,
    keep_subscribed,
    plan_sunset,
    run_sunset,
    subscriber_for_keep_token,
    sunset_job,
)
from newsletter.tokens import make_keep_token
from tests.factories import add_subscriber, public_id_for, queue_deliveries

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
WINDOW = NOW - timedelta(days=30)  # NEWSLETTER_SUNSET_DAYS=30 below
SECOND = timedelta(seconds=1)


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    application = App(make_settings(track_opens="true", sunset_days="30", sunset_min_emails="2"))
    yield application
    application.close()


def _open(session: Session, subscriber_id: int | None, at: datetime, *, human: bool = True) -> None:
    session.add(
        EngagementEvent(
            subscriber_id=subscriber_id,
            kind="open",
            human=human,
            reason="human" if human else "apple mpp ua",
            source="tracking",
            at=at,
        )
    )


def _sent(
    session: Session, subscriber_id: int, at: datetime, *, n: int = 2, status: str = "sent"
) -> None:
    for i in range(n):
        ids = queue_deliveries(
            session, [subscriber_id], item_id=f"tips/t{i}-{int(at.timestamp())}-{status}"
        )
        for row in session.scalars(select(Delivery).where(Delivery.id.in_(ids))):
            row.status, row.sent_at = status, at


def _member(session: Session, email: str, **fields: object) -> int:
    fields.setdefault("confirmed_at", WINDOW - timedelta(days=10))
    return add_subscriber(session, email, **fields).id


def _plan(app: App) -> SunsetPlan:
    with app.sessions() as session:
        return plan_sunset(session, app.settings, now=NOW)


def test_who_is_asked_the_boundaries_of_the_window(app: App) -> None:
    with transaction(app.sessions) as session:
        _open(session, None, WINDOW - timedelta(days=100))  # engagement data since long ago
        joined_at_window = _member(session, "a-joined-at-window@example.org", confirmed_at=WINDOW)
        _sent(session, joined_at_window, WINDOW)
        joined_after = _member(session, "b-joined-after@example.org", confirmed_at=WINDOW + SECOND)
        _sent(session, joined_after, WINDOW + SECOND)
        only_created = _member(
            session, "c-created@example.org", confirmed_at=None, created_at=WINDOW
        )
        _sent(session, only_created, NOW - SECOND)
        one_email = _member(session, "d-one-email@example.org")
        _sent(session, one_email, NOW, n=1)
        old_emails = _member(session, "e-old-emails@example.org")
        _sent(session, old_emails, WINDOW - SECOND)
        failed = _member(session, "f-failed@example.org")
        _sent(session, failed, NOW, status="failed")
        opened_at_window = _member(session, "g-opened-at-window@example.org")
        _sent(session, opened_at_window, NOW)
        _open(session, opened_at_window, WINDOW)
        opened_before = _member(session, "h-opened-before@example.org")
        _sent(session, opened_before, NOW)
        _open(session, opened_before, WINDOW - SECOND)
        machine = _member(session, "i-machine-open@example.org")
        _sent(session, machine, NOW)
        _open(session, machine, NOW - SECOND, human=False)
        left = _member(session, "j-left@example.org", status="unsubscribed")
        _sent(session, left, NOW)
        noticed = _member(session, "k-noticed@example.org", sunset_notice_at=NOW - SECOND)
        _sent(session, noticed, NOW)
    plan = _plan(app)
    assert plan.ask == [
        (joined_at_window, "a-joined-at-window@example.org"),
        (only_created, "c-created@example.org"),
        (opened_before, "h-opened-before@example.org"),
        (machine, "i-machine-open@example.org"),
    ]
    assert plan.as_dict() == {"asked": 4, "revived": 0, "made_inactive": 0}


def test_emails_count_only_since_engagement_data_exists(app: App) -> None:
    data_since = NOW - timedelta(days=5)
    with transaction(app.sessions) as session:
        _open(session, None, data_since)
        before_data = _member(session, "a-before-data@example.org")
        _sent(session, before_data, data_since - SECOND)
        at_data = _member(session, "b-at-data@example.org")
        _sent(session, at_data, data_since)
    assert _plan(app).ask == [(at_data, "b-at-data@example.org")]
    with app.sessions() as session:
        assert check_engagement_data(session, app.settings) == data_since


def test_revive_and_retire_the_boundaries_of_the_grace_time(app: App) -> None:
    grace_end = NOW - timedelta(days=14)
    with transaction(app.sessions) as session:
        _open(session, None, WINDOW - timedelta(days=100))
        opened_at_notice = _member(session, "a@example.org", sunset_notice_at=grace_end)
        _open(session, opened_at_notice, grace_end)
        opened_before_notice = _member(session, "b@example.org", sunset_notice_at=grace_end)
        _open(session, opened_before_notice, grace_end - SECOND)
        machine_after = _member(session, "c@example.org", sunset_notice_at=grace_end)
        _open(session, machine_after, NOW - SECOND, human=False)
        grace_not_over = _member(session, "d@example.org", sunset_notice_at=grace_end + SECOND)
        inactive = _member(session, "e@example.org", status="inactive", sunset_notice_at=grace_end)
        other_opened = _member(session, "f@example.org", sunset_notice_at=grace_end)
        _open(session, inactive, NOW - SECOND)  # someone else's engagement revives nobody
    plan = _plan(app)
    assert plan.revive == [(opened_at_notice, "a@example.org")]
    assert plan.retire == [
        (opened_before_notice, "b@example.org"),
        (machine_after, "c@example.org"),
        (other_opened, "f@example.org"),
    ]
    assert grace_not_over not in [sid for sid, _ in plan.ask + plan.revive + plan.retire]
    assert plan.as_dict() == {"asked": 0, "revived": 1, "made_inactive": 3}


def _state(app: App) -> dict[str, tuple[str, datetime | None]]:
    with app.sessions() as session:
        return {
            s.email: (s.status, s.sunset_notice_at)
            for s in session.scalars(select(Subscriber).order_by(Subscriber.id))
        }


def _seed_one_of_each(app: App) -> tuple[int, int, int]:
    with transaction(app.sessions) as session:
        _open(session, None, WINDOW - timedelta(days=100))
        ask = _member(session, "ask@example.org")
        _sent(session, ask, NOW)
        revive = _member(session, "revive@example.org", sunset_notice_at=NOW - timedelta(days=3))
        _open(session, revive, NOW - timedelta(days=1))
        retire = _member(session, "retire@example.org", sunset_notice_at=NOW - timedelta(days=20))
    return ask, revive, retire


def test_a_dry_run_changes_nothing(app: App) -> None:
    ask, revive, retire = _seed_one_of_each(app)
    before = _state(app)
    plan = run_sunset(app, now=NOW, dry_run=True)
    assert (plan.ask, plan.revive, plan.retire) == (
        [(ask, "ask@example.org")],
        [(revive, "revive@example.org")],
        [(retire, "retire@example.org")],
    )
    assert _state(app) == before
    with app.sessions() as session:
        assert (
            session.scalars(select(Delivery.kind).where(Delivery.kind == "repermission")).all()
            == []
        )


def test_a_pass_asks_revives_and_retires(app: App, caplog: pytest.LogCaptureFixture) -> None:
    ask, _, _ = _seed_one_of_each(app)
    with caplog.at_level(logging.INFO, logger="newsletter.sunset"):
        plan = run_sunset(app, now=NOW)
    assert plan.as_dict() == {"asked": 1, "revived": 1, "made_inactive": 1}
    assert _state(app) == {
        "ask@example.org": ("active", NOW),
        "revive@example.org": ("active", None),
        "retire@example.org": ("inactive", None),
    }
    with app.sessions() as session:
        asked = session.scalars(select(Delivery).where(Delivery.kind == "repermission")).one()
        assert (asked.key, asked.item_id, asked.subscriber_id, asked.due_at, asked.status) == (
            f"sunset:{ask}:2026-06-01",
            "system/still-interested",
            ask,
            NOW,
            "queued",
        )
        assert list(session.scalars(select(Suppression.reason))) == ["inactive"]
    assert [r.getMessage() for r in caplog.records] == [
        "sunset: {'asked': 1, 'revived': 1, 'made_inactive': 1}"
    ]


@pytest.mark.parametrize("who", ["ask", "retire"])
def test_a_pass_that_asks_or_retires_is_logged(
    app: App, caplog: pytest.LogCaptureFixture, who: str
) -> None:
    with transaction(app.sessions) as session:
        _open(session, None, WINDOW - timedelta(days=100))
        if who == "ask":
            _sent(session, _member(session, "ask@example.org"), NOW)
        else:
            _member(session, "retire@example.org", sunset_notice_at=NOW - timedelta(days=20))
    with caplog.at_level(logging.INFO, logger="newsletter.sunset"):
        run_sunset(app, now=NOW)
    expected = {"ask": "{'asked': 1, 'revived': 0, 'made_inactive': 0}"}.get(
        who, "{'asked': 0, 'revived': 0, 'made_inactive': 1}"
    )
    assert [r.getMessage() for r in caplog.records] == [f"sunset: {expected}"]


def test_a_pass_that_only_revives_is_not_logged(app: App, caplog: pytest.LogCaptureFixture) -> None:
    with transaction(app.sessions) as session:
        revive = _member(session, "revive@example.org", sunset_notice_at=NOW - timedelta(days=3))
        _open(session, revive, NOW - timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="newsletter.sunset"):
        assert run_sunset(app, now=NOW).as_dict() == {"asked": 0, "revived": 1, "made_inactive": 0}
    assert caplog.records == []
    assert _state(app) == {"revive@example.org": ("active", None)}


def test_the_job_is_off_refused_or_a_pass(
    app: App, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    off = App(make_settings())
    try:
        assert sunset_job(off, NOW) == {"enabled": False}
    finally:
        off.close()
    with caplog.at_level(logging.WARNING, logger="newsletter.sunset"):
        refused = sunset_job(app, NOW)
    reason = (
        "the sunset policy needs engagement data, but no open or click was ever recorded; "
        "wait until tracked emails have been read, then run it again"
    )
    assert refused == {"refused": reason}
    assert [r.getMessage() for r in caplog.records] == [f"sunset: {reason}"]
    _seed_one_of_each(app)
    assert sunset_job(app, NOW) == {"asked": 1, "revived": 1, "made_inactive": 1}


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        pytest.param({"sunset_days": "30"}, True, id="outbox-no-tracking"),
        pytest.param({"sunset_days": "30", "track_opens": "true"}, False, id="opens"),
        pytest.param({"sunset_days": "30", "track_clicks": "true"}, False, id="clicks"),
        pytest.param(
            {"sunset_days": "30", "mail_backend": "sendgrid", "sendgrid_api_key": "SG.x"},
            False,
            id="sendgrid-reports-opens",
        ),
    ],
)
def test_engagement_data_needs_tracking_or_sendgrid(
    make_settings: Callable[..., Settings], overrides: dict[str, str], refused: bool
) -> None:
    app = App(make_settings(**overrides))
    try:
        with transaction(app.sessions) as session:
            _open(session, None, NOW - timedelta(days=1))
        with app.sessions() as session:
            if refused:
                with pytest.raises(SunsetRefused) as error:
                    check_engagement_data(session, app.settings)
                assert str(error.value) == (
                    "the sunset policy needs engagement data, but our tracking is off "
                    "(NEWSLETTER_TRACK_OPENS, NEWSLETTER_TRACK_CLICKS) and the outbox backend "
                    "reports no opens or clicks; turn tracking on (see README, Tracking and "
                    "privacy) or set NEWSLETTER_SUNSET_DAYS=0"
                )
            else:
                assert check_engagement_data(session, app.settings) == NOW - timedelta(days=1)
    finally:
        app.close()


def _token(app: App, email: str) -> str:
    return make_keep_token(public_id_for(email), keys=app.settings.secret_keys)


def test_the_keep_token_finds_its_own_subscriber(app: App) -> None:
    with transaction(app.sessions) as session:
        _member(session, "first@example.org")
        second = _member(session, "second@example.org")
    found = subscriber_for_keep_token(app, _token(app, "second@example.org"))
    assert found is not None
    assert found.id == second
    assert subscriber_for_keep_token(app, _token(app, "forgotten@example.org")) is None


def _keeps(app: App) -> list[tuple[int | None, str, bool, str, str, datetime]]:
    with app.sessions() as session:
        return [
            (e.subscriber_id, e.kind, e.human, e.reason, e.source, e.at)
            for e in session.scalars(select(EngagementEvent).order_by(EngagementEvent.id))
        ]


def test_the_keep_button_keeps_an_active_subscriber_and_revives_an_inactive_one(app: App) -> None:
    with transaction(app.sessions) as session:
        _member(session, "other@example.org", sunset_notice_at=NOW - SECOND)
        active = _member(session, "active@example.org", sunset_notice_at=NOW - SECOND)
        inactive = _member(session, "inactive@example.org", status="inactive")
        session.add(
            Suppression(
                email_hash=email_hash("inactive@example.org"),
                reason="inactive",
                created_at=NOW - SECOND,
            )
        )
        _member(session, "left@example.org", status="unsubscribed")
    later = NOW + timedelta(hours=1)
    assert keep_subscribed(app, _token(app, "active@example.org"), ip=None, now=NOW) == "active"
    assert (
        keep_subscribed(app, _token(app, "inactive@example.org"), ip="127.0.0.1", now=later)
        == "active"
    )
    assert keep_subscribed(app, _token(app, "left@example.org"), ip=None, now=NOW) == "unsubscribed"
    assert keep_subscribed(app, _token(app, "gone@example.org"), ip=None, now=NOW) == "gone"
    assert _state(app) == {
        "other@example.org": ("active", NOW - SECOND),
        "active@example.org": ("active", None),
        "inactive@example.org": ("active", None),
        "left@example.org": ("unsubscribed", None),
    }
    assert _keeps(app) == [
        (active, "keep", True, "keep button", "keep", NOW),
        (inactive, "keep", True, "keep button", "keep", later),
    ]
    with app.sessions() as session:
        assert list(session.scalars(select(Suppression.reason))) == []
