"""The preference centre in Chromium at 375 px (a phone): opt out of one topic, choose
"at most one a week", and the timeline and the next 30 days reflect it."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from newsletter.app import App
from newsletter.attention.plan import plan_subscriber
from newsletter.attention.timeline import timeline
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.sending import schedule_campaign
from newsletter.db import transaction
from newsletter.drip.planner import plan_drips
from newsletter.enrollment import enroll_on_confirm
from newsletter.jobs import deliver
from newsletter.settings import load_settings
from newsletter.tokens import make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.conftest import NOW, base_environ
from tests.factories import add_subscriber
from tests.servers import free_port, serve_asgi

EMAIL = "phone@example.org"


def seed(app: App) -> str:
    """An active subscriber who got the welcome; a campaign (topic offers) in 3 days."""
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, EMAIL, timezone="Europe/Berlin")
        enroll_on_confirm(session, subscriber.id, app.library.sequences(), now=NOW)
        token = make_unsubscribe_token(subscriber.public_id, keys=app.settings.secret_keys)
    plan_drips(app, NOW)
    deliver(app, NOW)
    create_campaign(
        app,
        "campaigns/seven-day-reset",
        name="reset",
        include=(),
        exclude=(),
        pause_drips=False,
        now=NOW,
    )
    schedule_campaign(
        app,
        "reset",
        at=(NOW + timedelta(days=3)).isoformat(),
        timezone=None,
        local_time=False,
        now=NOW,
    )
    return token


@pytest.mark.browser
def test_opt_out_of_a_topic_and_choose_weekly_on_a_phone(tmp_path: Path, sqlite_url: str) -> None:
    browser_path = chromium_path()
    port = free_port()
    environ = base_environ(tmp_path, sqlite_url)
    environ["NEWSLETTER_BASE_URL"] = f"http://127.0.0.1:{port}"
    app = App(load_settings(environ))
    token = seed(app)
    before = plan_subscriber(app, EMAIL, now=NOW, days=30)
    assert "campaigns/seven-day-reset" in [p.item_id for p in before if p.status == "send"]
    with serve_asgi(create_web_app(app), port) as service, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 375, "height": 740})
        page.goto(f"{service}/unsubscribe/{token}")
        assert page.is_checked("#topic-offers")
        # nothing sticks out sideways on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.uncheck("#topic-offers")
        page.check("#frequency-weekly")
        with page.expect_navigation():
            page.click("#save")
        assert page.text_content("#notice") == "Saved. From now on you get only what you chose."
        assert not page.is_checked("#topic-offers")
        assert page.is_checked("#topic-tips")
        assert page.is_checked("#frequency-weekly")
        browser.close()
    entries = timeline(app, EMAIL)
    changes = [e for e in entries if e.source == "preferences"]
    assert [c.detail for c in changes] == [
        "topics: tips on, offers off; frequency: at most one a week"
    ]
    after = plan_subscriber(app, EMAIL, now=NOW, days=30)
    app.close()
    sends = [p for p in after if p.status == "send"]
    assert "campaigns/seven-day-reset" not in [p.item_id for p in sends]
    assert [p.note for p in after if p.item_id == "campaigns/seven-day-reset"] == [
        "opted out of topic 'offers'"
    ]
    assert len(sends) >= 3
    for earlier, later in itertools.pairwise(sends):
        assert later.at - earlier.at >= timedelta(days=7)
    # the welcome, sent before the choice, counts: the first tip waits a week after it
    assert sends[0].at >= NOW + timedelta(days=7)
