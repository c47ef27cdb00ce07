"""POST /subscribe over HTTP: every accepted shape and every bad input."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.models import ConsentEvent, Delivery, Subscriber
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.mailbox import read_outbox, text_part


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], clock: Clock
) -> Iterator[Callable[..., tuple[TestClient, App]]]:
    apps: list[App] = []

    def make(**overrides: str) -> tuple[TestClient, App]:
        application = App(make_settings(**overrides))
        apps.append(application)
        client = TestClient(create_web_app(application, clock=clock), follow_redirects=False)
        return client, application

    yield make
    for application in apps:
        application.close()


@pytest.fixture
def client(make_client: Callable[..., tuple[TestClient, App]]) -> TestClient:
    return make_client()[0]


@pytest.fixture
def web_app(make_client: Callable[..., tuple[TestClient, App]]) -> tuple[TestClient, App]:
    return make_client()


def counts(app: App) -> tuple[int, int, int]:
    with app.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Subscriber)) or 0,
            session.scalar(select(func.count()).select_from(ConsentEvent)) or 0,
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
        )


def outbox(app: App) -> Path:
    return app.settings.effective_outbox_dir


def test_json_subscribe_creates_pending_subscriber_and_sends_one_confirmation(
    web_app: tuple[TestClient, App],
) -> None:
    """A JSON post answers 202, records consent and mails a confirmation link."""
    client, app = web_app
    response = client.post(
        "/subscribe",
        json={
            "email": "Reader@Example.ORG",
            "first_name": "Ann",
            "timezone": "America/New_York",
            "tags": ["blog"],
            "source": "blog-footer",
        },
        headers={"User-Agent": "pytest-agent"},
    )
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        consent = session.scalars(select(ConsentEvent)).one()
    assert (subscriber.email, subscriber.status, subscriber.timezone) == (
        "reader@example.org",
        "pending",
        "America/New_York",
    )
    assert subscriber.tags == ["blog"]
    assert (consent.kind, consent.ip, consent.user_agent, consent.source) == (
        "subscribed",
        "testclient",
        "pytest-agent",
        "blog-footer",
    )
    assert consent.at == NOW
    assert consent.consent_text
    mails = read_outbox(outbox(app))
    assert len(mails) == 1
    assert mails[0]["To"] == "Ann <reader@example.org>"
    assert "/confirm/" in text_part(mails[0])
    assert "List-Unsubscribe" not in mails[0]  # transactional


@pytest.mark.parametrize(
    ("field", "body_type"),
    [
        ("email", "form"),
        ("EMAIL", "form"),
        ("email_address", "form"),
        ("contact[email]", "form"),
        ("email", "multipart"),
        ("contact[email]", "multipart"),
        ("email_address", "json"),
    ],
)
def test_email_field_aliases(web_app: tuple[TestClient, App], field: str, body_type: str) -> None:
    client, app = web_app
    data = {field: "alias@example.org", "name": "Bo"}
    if body_type == "form":
        response = client.post("/subscribe", data=data)
    elif body_type == "multipart":
        response = client.post("/subscribe", files={k: (None, v) for k, v in data.items()})
    else:
        response = client.post("/subscribe", json=data)
    assert response.status_code in (200, 202), response.text
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert (subscriber.email, subscriber.first_name) == ("alias@example.org", "Bo")


def test_browser_form_redirects_to_allowed_origin(web_app: tuple[TestClient, App]) -> None:
    client, _ = web_app
    response = client.post(
        "/subscribe",
        data={"email": "a@example.org", "redirect": "https://shop.example/thanks?x=1"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "https://shop.example/thanks?x=1"


def test_browser_form_without_redirect_gets_thank_you_page(client: TestClient) -> None:
    response = client.post("/subscribe", data={"email": "a@example.org"})
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "Check your inbox" in response.text


@pytest.mark.parametrize(
    "redirect",
    [
        "//evil.example/",
        "javascript:alert(1)",
        "https://evil.example/thanks",
        "https://shop.example.evil.example/",
        "https://user@shop.example/",
        "data:text/html,hi",
        "/relative/path",
        "https:\\\\evil.example",
        "http://shop.example/",  # scheme differs from the allowed https origin
    ],
)
def test_disallowed_redirect_is_refused_and_nothing_written(
    web_app: tuple[TestClient, App], redirect: str
) -> None:
    client, app = web_app
    response = client.post("/subscribe", data={"email": "a@example.org", "redirect": redirect})
    assert response.status_code == 400
    assert "redirect" in response.text
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"json": {"email": "not-an-address"}}, 400, "does not look right"),
        ({"json": {"email": "a@@example.org"}}, 400, "does not look right"),
        ({"json": {"email": ""}}, 400, "'email' field is required"),
        ({"json": {"name": "x"}}, 400, "'email' field is required"),
        ({"json": {"email": 42}}, 400, "must be a string"),
        ({"json": ["a@example.org"]}, 400, "must be an object"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "not valid JSON",
        ),
        (
            {"content": b"email=a@example.org", "headers": {"Content-Type": "text/plain"}},
            415,
            "application/x-www-form-urlencoded",
        ),
        ({"content": b"email=a@example.org"}, 415, "application/json"),
        (
            {
                "data": {"email": "a@example.org", "tags": "x"},
                "headers": {"X-Newsletter-Signature": "sha256=" + "0" * 64},
            },
            403,
            "does not match",
        ),
        (
            {"data": {"email": "a@example.org"}, "headers": {"X-Newsletter-Signature": "md5=abc"}},
            403,
            "sha256=",
        ),
        (
            {
                "data": {"email": "a@example.org"},
                "headers": {"X-Newsletter-Signature": "sha256=\u00e9\u00e9".encode("latin-1")},
            },
            403,
            "64 hex digits",
        ),
        (
            {
                "data": {"email": "a@example.org"},
                "headers": {"X-Newsletter-Signature": "sha256=abc"},
            },
            403,
            "64 hex digits",
        ),
    ],
    ids=[
        "malformed",
        "double-at",
        "empty",
        "missing",
        "not-string",
        "json-array",
        "bad-json",
        "text-plain",
        "no-content-type",
        "forged-signature",
        "bad-signature-scheme",
        "non-ascii-signature",
        "short-signature",
    ],
)
def test_bad_input_gets_clear_4xx_and_writes_nothing(
    web_app: tuple[TestClient, App], kwargs: dict[str, object], status: int, message: str
) -> None:
    client, app = web_app
    request = dict(kwargs)  # the parametrized dict is shared between database runs
    headers = {"Accept": "application/json", **request.pop("headers", {})}  # type: ignore[dict-item]
    response = client.post("/subscribe", headers=headers, **request)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert counts(app) == (0, 0, 0)
    assert read_outbox(outbox(app)) == []


def test_oversized_body_is_refused(web_app: tuple[TestClient, App]) -> None:
    client, app = web_app
    body = json.dumps({"email": "a@example.org", "source": "x" * 70_000})
    response = client.post("/subscribe", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert counts(app) == (0, 0, 0)


def test_oversized_chunked_body_is_refused_without_content_length(
    web_app: tuple[TestClient, App],
) -> None:
    client, app = web_app

    def chunks() -> Iterator[bytes]:
        yield b'{"email": "a@example.org", "source": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(
        "/subscribe", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert counts(app) == (0, 0, 0)


def post_signed(client: TestClient, signed: bytes, *, sent: bytes | None = None) -> Response:
    """POST ``sent`` (default: ``signed``) with the HMAC signature of ``signed``."""
    signature = hmac.new(b"form-secret", signed, hashlib.sha256).hexdigest()
    return client.post(
        "/subscribe",
        content=signed if sent is None else sent,
        headers={
            "Content-Type": "application/json",
            "X-Newsletter-Signature": f"sha256={signature}",
        },
    )


def test_valid_signature_is_accepted(web_app: tuple[TestClient, App]) -> None:
    client, app = web_app
    response = post_signed(client, json.dumps({"email": "signed@example.org"}).encode())
    assert response.status_code == 202
    assert counts(app)[0] == 1


def test_signature_over_other_body_is_refused(web_app: tuple[TestClient, App]) -> None:
    client, app = web_app
    signed = json.dumps({"email": "signed@example.org"}).encode()
    response = post_signed(client, signed, sent=signed.replace(b"signed", b"other"))
    assert response.status_code == 403
    assert counts(app) == (0, 0, 0)


def test_honeypot_gets_the_generic_success_and_writes_nothing(
    web_app: tuple[TestClient, App],
) -> None:
    client, app = web_app
    response = client.post("/subscribe", json={"email": "bot@example.org", "website": "spam"})
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert counts(app) == (0, 0, 0)


def test_rate_limit_per_ip(make_client: Callable[..., tuple[TestClient, App]]) -> None:
    client, app = make_client(subscribe_rate_limit="3/minute")
    statuses = [
        client.post("/subscribe", json={"email": f"r{i}@example.org"}).status_code for i in range(5)
    ]
    assert statuses == [202, 202, 202, 429, 429]
    assert counts(app)[0] == 3


def test_every_limit_of_the_rate_counts(make_client: Callable[..., tuple[TestClient, App]]) -> None:
    """``3/hour;2/minute``: the second limit stops the third post (``limits.parse`` read
    only the first one)."""
    client, app = make_client(subscribe_rate_limit="3/hour;2/minute")
    statuses = [
        client.post("/subscribe", json={"email": f"r{i}@example.org"}).status_code for i in range(3)
    ]
    assert statuses == [202, 202, 429]
    assert counts(app)[0] == 2


def test_same_answer_for_new_pending_active_and_suppressed(
    web_app: tuple[TestClient, App], clock: Clock
) -> None:
    """An observer cannot learn whether an address is on the list."""
    client, app = web_app
    from newsletter.db import transaction
    from newsletter.subscriptions import suppress

    with transaction(app.sessions) as session:
        add_subscriber(session, "active@example.org")
        suppress(session, "bounced@example.org", "bounced", now=NOW)
    answers = set()
    for address in [
        "new@example.org",
        "new@example.org",
        "active@example.org",
        "bounced@example.org",
    ]:
        response = client.post("/subscribe", json={"email": address})
        answers.add((response.status_code, response.text))
        clock.now += timedelta(seconds=1)
    assert len(answers) == 1


def test_at_most_one_confirmation_per_address_per_hour(
    web_app: tuple[TestClient, App], clock: Clock
) -> None:
    client, app = web_app
    for minutes in (0, 10, 59):
        clock.now = NOW + timedelta(minutes=minutes)
        assert client.post("/subscribe", json={"email": "many@example.org"}).status_code == 202
    assert len(read_outbox(outbox(app))) == 1
    clock.now = NOW + timedelta(minutes=61)
    client.post("/subscribe", json={"email": "MANY@example.org"})
    assert len(read_outbox(outbox(app))) == 2
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
        assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 4


def test_cors_allows_only_configured_origins(client: TestClient) -> None:
    allowed = client.options(
        "/subscribe",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    denied = client.options(
        "/subscribe",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in denied.headers
    simple = client.post(
        "/subscribe", json={"email": "c@example.org"}, headers={"Origin": "https://shop.example"}
    )
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "Europe", "America", "a" * 300, "../../etc/passwd", "Etc", ""],
    ids=["unknown", "directory", "directory-2", "too-long", "path", "etc", "empty"],
)
def test_unknown_timezone_falls_back_to_default(web_app: tuple[TestClient, App], zone: str) -> None:
    client, app = web_app
    response = client.post("/subscribe", json={"email": "tz@example.org", "timezone": zone})
    assert response.status_code == 202
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.timezone)).one() == "Europe/Berlin"


def test_healthz_reports_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "sending": "ok"}


def test_openapi_lists_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/subscribe", "/confirm/{token}", "/unsubscribe/{token}", "/healthz"]:
        assert path in paths


@pytest.mark.parametrize(
    "name", ["Ann\u0085Lee", "Ann\u2028 Lee", "  Ann \r\n Lee  ", "Ann\x07Lee"]
)
def test_names_are_cleaned_to_one_line(web_app: tuple[TestClient, App], name: str) -> None:
    """A name with control or line-break characters is stored (and mailed) on one line."""
    client, app = web_app
    response = client.post("/subscribe", json={"email": "odd@example.org", "first_name": name})
    assert response.status_code == 202
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.first_name)).one() == "Ann Lee"
    (mail,) = read_outbox(outbox(app))
    assert mail["To"] == "Ann Lee <odd@example.org>"


def test_a_backlog_of_confirmations_drains_in_large_batches_when_no_request_waits(
    web_app: tuple[TestClient, App],
) -> None:
    """With nobody waiting for the writer, the web process claims confirmations in large
    batches (a burst's backlog costs a few claims, not one per four emails); each is
    still sent once."""
    from sqlalchemy import event

    from newsletter.subscriptions import queue_confirmations
    from newsletter.web.app import CONFIRMATION_BATCH, IDLE_CONFIRMATION_BATCH

    client, app = web_app
    with app.sessions() as session, session.begin():
        ids = [
            add_subscriber(session, email=f"backlog{n}@example.org", status="pending").id
            for n in range(40)
        ]
        queue_confirmations(session, ids, now=NOW)
    commits: list[int] = []
    event.listen(app.engine, "commit", lambda _conn: commits.append(1))
    assert client.post("/subscribe", json={"email": "last@example.org"}).status_code == 202
    assert len(read_outbox(app.settings.effective_outbox_dir)) == 41
    # 41 emails: 2 claims of 32 (3 commits each), 1 empty claim; in batches of 4 it was 33+.
    assert IDLE_CONFIRMATION_BATCH > CONFIRMATION_BATCH
    assert len(commits) < 41 // CONFIRMATION_BATCH * 3, len(commits)
