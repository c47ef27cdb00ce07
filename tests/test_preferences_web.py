"""The preference centre over HTTP: the page (also on GET /unsubscribe), saving topics and
a frequency as a consent event, every bad post a 4xx with nothing written, one-click
unsubscribe still unsubscribing from everything, and the footer link in every email."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import ConsentEvent, Subscriber, SubscriberPreferences
from newsletter.settings import Settings
from newsletter.tokens import make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.test_web_subscribe import Clock

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def site(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, App, str]]:
    app = App(make_settings())
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, "p@example.org")
        token = make_unsubscribe_token(subscriber.public_id, keys=app.settings.secret_keys)
    yield TestClient(create_web_app(app, clock=Clock(NOW)), follow_redirects=False), app, token
    app.close()


def saved(app: App) -> tuple[list[str], str] | None:
    with app.sessions() as session:
        prefs = session.scalar(select(SubscriberPreferences))
        return (prefs.topics_off, prefs.frequency) if prefs else None


def consent_count(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)


def test_the_page_lists_topics_and_frequencies_and_changes_nothing(
    site: tuple[TestClient, App, str],
) -> None:
    client, app, token = site
    page = client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert 'name="topic" value="tips" id="topic-tips" checked' in page.text
    assert 'name="topic" value="offers" id="topic-offers" checked' in page.text
    assert 'value="as_they_come" id="frequency-as_they_come" checked' in page.text
    assert "At most one a week" in page.text
    assert f'action="/preferences/{token}"' in page.text
    assert "<script" not in page.text
    assert "set-cookie" not in page.headers
    assert saved(app) is None


def test_the_unsubscribe_page_offers_the_choices_above_its_button(
    site: tuple[TestClient, App, str],
) -> None:
    client, _app, token = site
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert ">Unsubscribe<" in page.text
    assert f'action="/unsubscribe/{token}"' in page.text
    assert f'action="/preferences/{token}"' in page.text


def test_saving_records_the_choice_and_one_consent_event_per_change(
    site: tuple[TestClient, App, str],
) -> None:
    client, app, token = site
    before = consent_count(app)
    answer = client.post(
        f"/preferences/{token}", content="topic=tips&frequency=weekly", headers=FORM
    )
    assert answer.status_code == 200
    assert "Saved." in answer.text
    assert 'value="offers" id="topic-offers">' in answer.text  # now unchecked
    assert saved(app) == (["offers"], "weekly")
    again = client.post(
        f"/preferences/{token}", content="topic=tips&frequency=weekly", headers=FORM
    )
    assert again.status_code == 200
    assert consent_count(app) == before + 1  # nothing changed the second time
    with app.sessions() as session:
        event = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    assert event is not None
    assert (event.kind, event.source) == ("preferences", "preference centre")
    assert event.consent_text == "topics: tips on, offers off; frequency: at most one a week"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ("topic=nope&frequency=weekly", FORM, 400),
        ("topic=tips&frequency=hourly", FORM, 400),
        ("topic=tips", FORM, 400),
        ("frequency=weekly&frequency=as_they_come", FORM, 400),
        ("topic=tips&topic=tips&frequency=weekly", FORM, 400),
        ("frequency=weekly&admin=1", FORM, 400),
        ("%ff%fe=1", FORM, 400),
        ('{"frequency": "weekly"}', {"content-type": "application/json"}, 415),
        ("frequency=weekly", {**FORM, "origin": "https://evil.example"}, 403),
        ("frequency=weekly", {**FORM, "sec-fetch-site": "cross-site"}, 403),
        ("frequency=weekly&" + "topic=tips&" * 1000, FORM, 413),
    ],
    ids=[
        "unknown-topic",
        "unknown-frequency",
        "no-frequency",
        "two-frequencies",
        "topic-twice",
        "unknown-field",
        "not-utf8",
        "json",
        "other-origin",
        "cross-site",
        "too-large",
    ],
)
def test_every_bad_post_is_a_4xx_and_writes_nothing(
    site: tuple[TestClient, App, str], body: str, headers: dict[str, str], status: int
) -> None:
    client, app, token = site
    before = consent_count(app)
    answer = client.post(f"/preferences/{token}", content=body, headers=headers)
    assert answer.status_code == status
    assert "Traceback" not in answer.text
    assert saved(app) is None
    assert consent_count(app) == before


def test_a_forged_token_is_refused(site: tuple[TestClient, App, str]) -> None:
    client, app, token = site
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    assert client.get(f"/preferences/{forged}").status_code == 400
    answer = client.post(f"/preferences/{forged}", content="frequency=weekly", headers=FORM)
    assert answer.status_code == 400
    assert saved(app) is None


def test_one_click_still_unsubscribes_from_everything(site: tuple[TestClient, App, str]) -> None:
    client, app, token = site
    client.post(f"/preferences/{token}", content="topic=tips&frequency=weekly", headers=FORM)
    answer = client.post(
        f"/unsubscribe/{token}", content="List-Unsubscribe=One-Click", headers=FORM
    )
    assert answer.status_code == 200
    with app.sessions() as session:
        assert session.scalar(select(Subscriber.status)) == "unsubscribed"


def test_every_marketing_email_links_the_preference_centre(app: App) -> None:
    from newsletter.content.model import Links, SubscriberContext

    links = Links(
        unsubscribe="https://n.example/unsubscribe/t", preferences="https://n.example/preferences/t"
    )
    rendered = app.library.render("tips/meet-your-ql", SubscriberContext(email="a@b.org"), links)
    assert 'href="https://n.example/preferences/t"' in rendered.html
    assert "Choose what you get: https://n.example/preferences/t\n" in rendered.text
