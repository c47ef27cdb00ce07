"""Double opt-in and unsubscribe over HTTP, including RFC 8058 one-click."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.drip.planner import plan_drips
from newsletter.jobs import deliver
from newsletter.models import ConsentEvent, Enrollment, Subscriber, Suppression
from newsletter.settings import Settings
from newsletter.stats import sequence_stats
from newsletter.tokens import make_confirm_token, make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.mailbox import html_part, link, read_outbox, token_of
from tests.test_web_subscribe import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def site(make_settings: Callable[..., Settings], clock: Clock) -> Iterator[tuple[TestClient, App]]:
    app = App(make_settings())
    yield TestClient(create_web_app(app, clock=clock), follow_redirects=False), app
    app.close()


def subscribe_and_get_confirm_token(client: TestClient, app: App, email: str) -> str:
    assert client.post("/subscribe", json={"email": email, "first_name": "Kim"}).status_code == 202
    mails = [m for m in read_outbox(app.settings.effective_outbox_dir) if email in m["To"]]
    return token_of(link(mails[-1], "/confirm/"))


def status_of(app: App, email: str) -> str | None:
    with app.sessions() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email == email))


def test_get_confirm_shows_a_button_and_changes_nothing(site: tuple[TestClient, App]) -> None:
    client, app = site
    token = subscribe_and_get_confirm_token(client, app, "kim@example.org")
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert f'action="/confirm/{token}"' in page.text
    assert ">Confirm<" in page.text
    assert status_of(app, "kim@example.org") == "pending"


def test_post_confirm_activates_records_consent_and_enrolls(
    site: tuple[TestClient, App], clock: Clock
) -> None:
    client, app = site
    token = subscribe_and_get_confirm_token(client, app, "kim@example.org")
    clock.now = NOW + timedelta(hours=2)
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200
    assert "You are subscribed" in response.text
    assert status_of(app, "kim@example.org") == "active"
    with app.sessions() as session:
        kinds = list(session.scalars(select(ConsentEvent.kind).order_by(ConsentEvent.id)))
        confirmed = session.scalars(
            select(ConsentEvent).where(ConsentEvent.kind == "confirmed")
        ).one()
        enrollments = list(session.scalars(select(Enrollment.sequence)))
    assert kinds == ["subscribed", "confirmed"]
    assert confirmed.at == NOW + timedelta(hours=2)
    assert confirmed.ip == "testclient"
    assert "back-pain-basics" in enrollments
    again = client.post(f"/confirm/{token}")  # a repeat is harmless
    assert again.status_code == 200
    with app.sessions() as session:
        assert len(list(session.scalars(select(Enrollment)))) == len(enrollments)


def test_expired_confirm_token_gets_a_clear_page_and_a_way_to_ask_again(
    site: tuple[TestClient, App], clock: Clock
) -> None:
    client, app = site
    token = subscribe_and_get_confirm_token(client, app, "late@example.org")
    clock.now = NOW + timedelta(days=8)
    for response in (client.get(f"/confirm/{token}"), client.post(f"/confirm/{token}")):
        assert response.status_code == 410
        assert "expired" in response.text
        assert 'action="/subscribe"' in response.text
    assert status_of(app, "late@example.org") == "pending"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: "not-a-token",
        lambda t: t.split(".")[0],
    ],
    ids=["bad-signature", "prefixed", "garbage", "truncated"],
)
def test_tampered_confirm_token_is_refused(
    site: tuple[TestClient, App], mangle: Callable[[str], str]
) -> None:
    client, app = site
    token = subscribe_and_get_confirm_token(client, app, "t@example.org")
    bad = mangle(token)
    for response in (client.get(f"/confirm/{bad}"), client.post(f"/confirm/{bad}")):
        assert response.status_code == 400
        assert "not valid" in response.text
    assert status_of(app, "t@example.org") == "pending"


def test_unsubscribe_token_cannot_confirm(site: tuple[TestClient, App]) -> None:
    """Tokens are bound to their purpose."""
    client, app = site
    subscribe_and_get_confirm_token(client, app, "p@example.org")
    with app.sessions() as session:
        public_id = session.scalars(select(Subscriber.public_id)).one()
    unsub = make_unsubscribe_token(public_id, keys=app.settings.secret_keys)
    assert client.post(f"/confirm/{unsub}").status_code == 400
    confirm = make_confirm_token(public_id, keys=app.settings.secret_keys, now=NOW)
    assert client.post(f"/unsubscribe/{confirm}").status_code == 400
    assert status_of(app, "p@example.org") == "pending"


def active_subscriber(
    client: TestClient, app: App, email: str, *, confirm_token: list[str] | None = None
) -> str:
    """Subscribe and confirm ``email``; return its unsubscribe token (and, when a list is
    given, append the confirm token used to it)."""
    token = subscribe_and_get_confirm_token(client, app, email)
    if confirm_token is not None:
        confirm_token.append(token)
    assert client.post(f"/confirm/{token}").status_code == 200
    with app.sessions() as session:
        public_id = session.scalar(select(Subscriber.public_id).where(Subscriber.email == email))
    assert public_id
    return make_unsubscribe_token(public_id, keys=app.settings.secret_keys)


def test_get_unsubscribe_shows_a_button_and_changes_nothing(site: tuple[TestClient, App]) -> None:
    client, app = site
    token = active_subscriber(client, app, "u@example.org")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert ">Unsubscribe<" in page.text
    assert status_of(app, "u@example.org") == "active"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_rfc8058_one_click_unsubscribes_with_200_and_no_redirect(
    site: tuple[TestClient, App], encoding: str
) -> None:
    client, app = site
    token = active_subscriber(client, app, "oneclick@example.org")
    if encoding == "urlencoded":
        response = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    else:
        response = client.post(
            f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")}
        )
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert status_of(app, "oneclick@example.org") == "unsubscribed"
    with app.sessions() as session:
        assert session.scalars(select(Suppression.reason)).one() == "unsubscribed"
        assert {e.status for e in session.scalars(select(Enrollment))} == {"stopped"}
    repeat = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert repeat.status_code == 200


def test_unsubscribe_token_survives_secret_rotation(
    make_settings: Callable[..., Settings], clock: Clock
) -> None:
    old_app = App(make_settings(secret_key="old-key"))
    client = TestClient(create_web_app(old_app, clock=clock))
    token = active_subscriber(client, old_app, "rot@example.org")
    old_app.close()
    rotated = App(make_settings(secret_key="brand-new-key,old-key"))
    client = TestClient(create_web_app(rotated, clock=clock))
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert status_of(rotated, "rot@example.org") == "unsubscribed"
    rotated.close()


def test_forged_unsubscribe_token_is_refused(site: tuple[TestClient, App]) -> None:
    client, app = site
    active_subscriber(client, app, "f@example.org")
    forged = make_unsubscribe_token("0" * 32, keys=["attacker-key"])
    assert client.get(f"/unsubscribe/{forged}").status_code == 400
    response = client.post(f"/unsubscribe/{forged}")
    assert response.status_code == 400
    assert "not valid" in response.text
    assert status_of(app, "f@example.org") == "active"


def test_resubscribe_after_unsubscribe_needs_a_new_confirmation(
    site: tuple[TestClient, App], clock: Clock
) -> None:
    client, app = site
    token = active_subscriber(client, app, "back@example.org")
    client.post(f"/unsubscribe/{token}")
    clock.now = NOW + timedelta(hours=3)
    confirm_token = subscribe_and_get_confirm_token(client, app, "back@example.org")
    assert status_of(app, "back@example.org") == "pending"
    client.post(f"/confirm/{confirm_token}")
    assert status_of(app, "back@example.org") == "active"
    with app.sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


def first_drip(client: TestClient, app: App, clock: Clock, email: str) -> tuple[str, EmailMessage]:
    """An active subscriber's unsubscribe token and their first drip email (via the outbox)."""
    token = active_subscriber(client, app, email)
    plan_drips(app, clock.now)  # the welcome step is due at once
    deliver(app, clock.now)
    mails = [
        m
        for m in read_outbox(app.settings.effective_outbox_dir)
        if email in m["To"] and m["List-Unsubscribe"]
    ]
    assert len(mails) == 1
    return token, mails[0]


def withdrawals(app: App, email: str) -> list[int | None]:
    """The delivery id of each ``withdrawn`` consent event of one subscriber."""
    with app.sessions() as session:
        return list(
            session.scalars(
                select(ConsentEvent.delivery_id)
                .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
                .where(Subscriber.email == email, ConsentEvent.kind == "withdrawn")
                .order_by(ConsentEvent.id)
            )
        )


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def test_unsubscribe_link_names_its_email_and_the_stats_count_it(
    site: tuple[TestClient, App], clock: Clock
) -> None:
    """Link and header carry ``?d=<delivery>``; the GET form keeps it; the POST records it."""
    client, app = site
    token, mail = first_drip(client, app, clock, "drip@example.org")
    delivery_id = int(mail["X-Newsletter-Delivery"])
    url = link(mail, "/unsubscribe/")
    assert url == f"https://news.example/unsubscribe/{token}?d={delivery_id}"
    assert mail["List-Unsubscribe"] == f"<{url}>"
    assert f'href="{url}"' in html_part(mail)
    page = client.get(path_of(url))
    assert page.status_code == 200
    assert f'action="/unsubscribe/{token}?d={delivery_id}"' in page.text
    assert client.post(path_of(url)).status_code == 200
    assert status_of(app, "drip@example.org") == "unsubscribed"
    assert withdrawals(app, "drip@example.org") == [delivery_id]
    with app.sessions() as session:
        step = sequence_stats(session, "back-pain-basics")[0]
    assert (step["step"], step["sent"], step["unsubscribes"]) == (0, 1, 1)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_on_the_header_url_records_the_email(
    site: tuple[TestClient, App], clock: Clock, encoding: str
) -> None:
    """RFC 8058 POST straight to the ``List-Unsubscribe`` URL: 200, no redirect, recorded."""
    client, app = site
    _, mail = first_drip(client, app, clock, "oneclick@example.org")
    target = path_of(str(mail["List-Unsubscribe"]).strip("<>"))
    if encoding == "urlencoded":
        response = client.post(target, data={"List-Unsubscribe": "One-Click"})
    else:
        response = client.post(target, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert status_of(app, "oneclick@example.org") == "unsubscribed"
    assert withdrawals(app, "oneclick@example.org") == [int(mail["X-Newsletter-Delivery"])]


@pytest.mark.parametrize(
    "bogus",
    [
        pytest.param("other", id="other-subscribers-delivery"),
        pytest.param("missing", id="missing"),
        pytest.param("unknown", id="no-such-delivery"),
        pytest.param(str(2**63 - 1), id="largest-bigint"),
        pytest.param(str(2**63), id="past-bigint"),
        pytest.param("9" * 300, id="huge"),
        pytest.param("abc", id="not-a-number"),
        pytest.param("", id="empty"),
        pytest.param("-1", id="negative"),
        pytest.param("1.5", id="decimal"),
        pytest.param('1"><script>alert(1)</script>', id="markup"),
    ],
)
def test_bogus_d_is_ignored_and_the_unsubscribe_still_works(
    site: tuple[TestClient, App], clock: Clock, bogus: str
) -> None:
    """``d`` is only kept when it is one of this subscriber's emails; never a 4xx/5xx."""
    client, app = site
    token, mine = first_drip(client, app, clock, "me@example.org")
    _, theirs = first_drip(client, app, clock, "them@example.org")
    value = {
        "other": theirs["X-Newsletter-Delivery"],
        "unknown": str(int(mine["X-Newsletter-Delivery"]) + 1000),
    }.get(bogus, bogus)
    params = {} if bogus == "missing" else {"d": value}
    page = client.get(f"/unsubscribe/{token}", params=params)
    assert page.status_code == 200
    well_formed = bogus in ("other", "unknown", str(2**63 - 1))  # checked by the POST
    action = f"/unsubscribe/{token}?d={value}" if well_formed else f"/unsubscribe/{token}"
    assert f'action="{action}"' in page.text
    assert "<script>" not in page.text
    response = client.post(f"/unsubscribe/{token}", params=params)
    assert response.status_code == 200
    assert status_of(app, "me@example.org") == "unsubscribed"
    assert status_of(app, "them@example.org") == "active"
    assert withdrawals(app, "me@example.org") == [None]
    with app.sessions() as session:
        assert [row["unsubscribes"] for row in sequence_stats(session, "back-pain-basics")] == [0]


def test_an_old_confirm_link_cannot_undo_an_unsubscribe(site: tuple[TestClient, App]) -> None:
    """The unsubscribe wins: the confirmation email sent before it no longer activates."""
    client, app = site
    used: list[str] = []
    client.post(
        f"/unsubscribe/{active_subscriber(client, app, 'undo@example.org', confirm_token=used)}"
    )
    again = client.post(f"/confirm/{used[0]}")
    assert again.status_code == 400
    assert "unsubscribed after this link was sent" in again.text
    assert status_of(app, "undo@example.org") == "unsubscribed"


def test_a_bounced_address_stays_bounced(site: tuple[TestClient, App]) -> None:
    """Neither the unsubscribe link nor an old confirm link moves a bounced subscriber."""
    from newsletter.db import transaction
    from newsletter.subscriptions import suppress

    client, app = site
    used: list[str] = []
    unsub = active_subscriber(client, app, "dead@example.org", confirm_token=used)
    with transaction(app.sessions) as session:
        subscriber = session.scalars(select(Subscriber)).one()
        subscriber.status = "bounced"
        suppress(session, subscriber.email, "bounced", now=NOW)
    assert client.post(f"/unsubscribe/{unsub}").status_code == 200
    assert status_of(app, "dead@example.org") == "bounced"
    assert client.post(f"/confirm/{used[0]}").status_code == 400
    assert status_of(app, "dead@example.org") == "bounced"
    with app.sessions() as session:
        assert session.scalars(select(Suppression.reason)).one() == "bounced"


def test_a_finished_sequence_stays_finished_after_unsubscribe_and_return(
    site: tuple[TestClient, App], clock: Clock
) -> None:
    from sqlalchemy import update

    from newsletter.db import transaction

    client, app = site
    unsub = active_subscriber(client, app, "done@example.org")
    with transaction(app.sessions) as session:
        session.execute(update(Enrollment).values(status="done", next_due_at=None))
    client.post(f"/unsubscribe/{unsub}")
    clock.now = NOW + timedelta(hours=2)
    fresh = subscribe_and_get_confirm_token(client, app, "done@example.org")
    client.post(f"/confirm/{fresh}")
    assert status_of(app, "done@example.org") == "active"
    with app.sessions() as session:
        assert [e.status for e in session.scalars(select(Enrollment))] == ["done"]
