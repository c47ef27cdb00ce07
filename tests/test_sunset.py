"""List hygiene end to end over simulated months with ``newsletter tick --now``: the silent
subscriber gets one re-permission email and is made ``inactive`` 14 days later; a reader
who opens (over HTTP, through the pixel) is never asked; a subscriber who presses the keep
button stays; re-subscribing reverses ``inactive``. Refuses without engagement data."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.models import Delivery, EngagementEvent, Subscriber, Suppression
from newsletter.settings import Settings, load_settings
from newsletter.sunset import SunsetRefused, plan_sunset
from newsletter.tracking.tokens import make_open_token
from newsletter.web.app import create_web_app
from tests.factories import add_subscriber, queue_deliveries
from tests.mailbox import link, read_outbox, token_of
from tests.test_web_subscribe import Clock

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 09:00 in Berlin: inside the send window
CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0"


def cli(env: dict[str, Any], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def status(app: App, email: str) -> str:
    with app.sessions() as session:
        return str(session.scalar(select(Subscriber.status).where(Subscriber.email == email)))


def sent_to(app: App, email: str, item: str | None = None) -> list[Delivery]:
    with app.sessions() as session:
        statement = (
            select(Delivery)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == email, Delivery.status == "sent")
            .order_by(Delivery.id)
        )
        if item is not None:
            statement = statement.where(Delivery.item_id == item)
        return list(session.scalars(statement))


def test_sunset_over_simulated_months(cli_env: dict[str, Any], tmp_path: Path) -> None:
    env = {
        **cli_env,
        "NEWSLETTER_TRACK_OPENS": "true",
        "NEWSLETTER_SUNSET_DAYS": "60",
        "NEWSLETTER_SUNSET_MIN_EMAILS": "3",
    }
    for who in ("reader", "silent", "keeper"):
        added = cli(
            env, "subscribers", "add", f"{who}@example.org", "--confirmed", "--now", T0.isoformat()
        )
        assert added.exit_code == 0, added.output
    app = App(load_settings(env))
    clock = Clock(T0)
    web = TestClient(create_web_app(app, clock=clock), follow_redirects=False)
    asked: dict[str, datetime] = {}
    inactive_at: dict[str, datetime] = {}
    try:
        now = T0
        while now <= T0 + timedelta(days=84):
            result = cli(env, "tick", "--now", now.isoformat())
            assert result.exit_code == 0, result.output
            clock.now = now + timedelta(hours=2)
            latest = sent_to(app, "reader@example.org")
            if latest:  # the reader opens what they get, hours later, in a browser
                token = make_open_token(latest[-1].id, keys=app.settings.secret_keys)
                assert web.get(f"/t/o/{token}", headers={"user-agent": CHROME}).status_code == 200
            for who in ("silent", "keeper"):
                email = f"{who}@example.org"
                notices = sent_to(app, email, "system/still-interested")
                if who not in asked and notices:
                    asked[who] = notices[0].created_at  # when the policy decided to ask
                    if who == "keeper":  # presses the button in the email
                        keep = _keep_link(app, email)
                        assert web.get(keep).status_code == 200  # a page: changes nothing
                        assert web.post(keep).status_code == 200
                if who not in inactive_at and status(app, email) == "inactive":
                    inactive_at[who] = now
            now += timedelta(days=3)
        # Apple's proxy "opening" the silent subscriber's mail never counted as engagement.
        assert status(app, "reader@example.org") == "active"
        assert status(app, "keeper@example.org") == "active"
        assert status(app, "silent@example.org") == "inactive"
        assert set(asked) == {"silent", "keeper"}
        assert T0 + timedelta(days=60) <= asked["silent"] <= T0 + timedelta(days=63)
        wait = inactive_at["silent"] - asked["silent"]
        assert timedelta(days=14) <= wait <= timedelta(days=17)
        assert sent_to(app, "reader@example.org", "system/still-interested") == []
        assert len(sent_to(app, "silent@example.org", "system/still-interested")) == 1
        # Nothing more went to the inactive subscriber, and the list says so.
        last = sent_to(app, "silent@example.org")[-1]
        assert last.sent_at is not None
        assert last.sent_at < inactive_at["silent"]
        with app.sessions() as session:
            reasons = list(session.scalars(select(Suppression.reason)))
        assert reasons == ["inactive"]
        # Re-subscribing reverses it: the confirmation link makes them active again.
        assert web.post("/subscribe", json={"email": "silent@example.org"}).status_code == 202
        cli(env, "tick", "--now", (now + timedelta(minutes=1)).isoformat())
        mails = [
            m
            for m in read_outbox(app.settings.effective_outbox_dir)
            if "silent@example.org" in str(m["To"]) and "/confirm/" in str(m)
        ]
        confirm = token_of(link(mails[-1], "/confirm/"))
        assert web.post(f"/confirm/{confirm}").status_code == 200
        assert status(app, "silent@example.org") == "active"
        with app.sessions() as session:
            assert list(session.scalars(select(Suppression.reason))) == []
    finally:
        app.close()


def _keep_link(app: App, email: str) -> str:
    for message in read_outbox(app.settings.effective_outbox_dir):
        if email in str(message["To"]) and "Still want" in str(message["Subject"]):
            found = re.search(r"https://news\.example(/keep/[A-Za-z0-9_.\-]+)", str(message))
            assert found
            return found.group(1)
    raise AssertionError(f"no sunset email to {email}")


def test_refuses_without_engagement_data_and_says_why(cli_env: dict[str, Any]) -> None:
    env = {**cli_env, "NEWSLETTER_SUNSET_DAYS": "180"}
    result = CliRunner().invoke(main, ["subscribers", "sunset", "--dry-run"], env=env)
    assert result.exit_code == 1
    assert "needs engagement data, but our tracking is off" in result.stderr
    assert "NEWSLETTER_TRACK_OPENS" in result.stderr
    tracked = {**env, "NEWSLETTER_TRACK_CLICKS": "true"}
    result = CliRunner().invoke(main, ["subscribers", "sunset"], env=tracked)
    assert result.exit_code == 1
    assert "no open or click was ever recorded" in result.stderr
    off = CliRunner().invoke(main, ["subscribers", "sunset"], env=cli_env)
    assert off.exit_code == 1
    assert "set NEWSLETTER_SUNSET_DAYS" in off.stderr
    tick = cli(env, "tick", "--job", "sunset")
    assert 'sunset: {"refused": "the sunset policy needs engagement data' in tick.stdout


def test_dry_run_lists_who_would_be_asked_and_changes_nothing(
    make_settings: Callable[..., Settings],
    cli_env: dict[str, Any],
) -> None:
    settings = make_settings(track_opens="true", sunset_days="30", sunset_min_emails="2")
    app = App(settings)
    now = T0 + timedelta(days=40)
    try:
        with transaction(app.sessions) as session:
            quiet = add_subscriber(session, "quiet@example.org", confirmed_at=T0, created_at=T0)
            busy = add_subscriber(session, "busy@example.org", confirmed_at=T0, created_at=T0)
            new = add_subscriber(session, "new@example.org", created_at=now - timedelta(days=3))
            for n in range(3):
                ids = queue_deliveries(session, [quiet.id, busy.id, new.id], item_id=f"tips/t{n}")
                for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids))):
                    d.status, d.sent_at = "sent", now - timedelta(days=2 + n)
            session.add(
                EngagementEvent(
                    delivery_id=None,
                    subscriber_id=busy.id,
                    kind="open",
                    human=True,
                    reason="human",
                    source="tracking",
                    at=now - timedelta(days=20),
                )
            )
            session.add(  # a machine open is no engagement
                EngagementEvent(
                    subscriber_id=quiet.id,
                    kind="open",
                    human=False,
                    reason="apple mpp ua",
                    source="tracking",
                    at=now - timedelta(days=1),
                )
            )
    finally:
        app.close()
    env = {
        **cli_env,
        "NEWSLETTER_TRACK_OPENS": "true",
        "NEWSLETTER_SUNSET_DAYS": "30",
        "NEWSLETTER_SUNSET_MIN_EMAILS": "2",
    }
    result = cli(env, "subscribers", "sunset", "--dry-run", "--now", now.isoformat())
    assert result.exit_code == 0
    assert result.stdout == (
        "would be asked (re-permission email): 1\n"
        "  quiet@example.org\n"
        "would be kept (engaged since the email): 0\n"
        "would be made inactive: 0\n"
    )
    app = App(load_settings(env))
    try:
        with app.sessions() as session:
            assert (
                session.scalar(select(Subscriber.sunset_notice_at).where(Subscriber.id == quiet.id))
                is None
            )
            assert plan_sunset(session, app.settings, now=now).ask == [
                (quiet.id, "quiet@example.org")
            ]
    finally:
        app.close()


def test_plan_refuses_with_the_outbox_and_no_tracking(
    make_settings: Callable[..., Settings],
) -> None:
    app = App(make_settings(sunset_days="30"))
    try:
        with app.sessions() as session, pytest.raises(SunsetRefused, match="outbox backend"):
            plan_sunset(session, app.settings, now=T0)
    finally:
        app.close()
