"""REST API, subscribers and auth: every route and every bad input, SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.api_keys import revoke_key
from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import (
    ConsentEvent,
    Delivery,
    Enrollment,
    Subscriber,
    SubscriberEvent,
    Suppression,
)
from newsletter.settings import Settings
from tests.api_support import Clock, bearer, keys_and_client
from tests.conftest import NOW, Ticks
from tests.factories import add_subscriber
from tests.mailers import RecordingMailer

API = "/api/v1"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings, mailer=RecordingMailer())
    yield application
    application.close()


@pytest.fixture
def api(app: App, clock: Clock) -> tuple[TestClient, str, str]:
    return keys_and_client(app, clock)


def counts(app: App) -> dict[str, int]:
    """Rows a refused request must not have written."""
    with app.sessions() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Subscriber, ConsentEvent, Delivery, Enrollment, SubscriberEvent)
        }


def error_of(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


# ---- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/subscribers"),
        ("GET", "/subscribers/a@example.org"),
        ("POST", "/subscribers"),
        ("PATCH", "/subscribers/a@example.org"),
        ("DELETE", "/subscribers/a@example.org"),
        ("POST", "/subscribers/a@example.org/tags"),
        ("POST", "/events"),
        ("GET", "/sequences"),
        ("GET", "/campaigns"),
        ("GET", "/stats"),
    ],
)
def test_every_route_needs_a_key(
    api: tuple[TestClient, str, str], app: App, method: str, path: str
) -> None:
    client, write, _read = api
    before = counts(app)
    for headers in (
        {},
        {"Authorization": "Bearer nl_wrong"},
        {"Authorization": f"Basic {write}"},
        {"Authorization": "Bearer"},
    ):
        response = client.request(method, API + path, headers=headers, json={})
        assert error_of(response) == (401, "unauthorized"), headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert counts(app) == before


def test_a_revoked_key_is_refused_at_once(
    api: tuple[TestClient, str, str], app: App, clock: Clock
) -> None:
    client, write, _read = api
    assert client.get(f"{API}/subscribers", headers=bearer(write)).status_code == 200
    revoke_key(app, "shop", now=clock())
    response = client.get(f"{API}/subscribers", headers=bearer(write))
    assert error_of(response) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/subscribers", {"email": "new@example.org"}),
        ("PATCH", "/subscribers/a@example.org", {"first_name": "X"}),
        ("DELETE", "/subscribers/a@example.org", None),
        ("POST", "/subscribers/a@example.org/tags", {"add": ["x"]}),
        ("POST", "/events", {"email": "a@example.org", "name": "purchase", "id": "o-1"}),
    ],
)
def test_a_read_key_cannot_write(
    api: tuple[TestClient, str, str], app: App, method: str, path: str, body: Any
) -> None:
    client, _write, read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org")
    before = counts(app)
    response = client.request(method, API + path, headers=bearer(read), json=body)
    assert error_of(response) == (403, "forbidden")
    assert counts(app) == before


def test_a_read_key_reads(api: tuple[TestClient, str, str]) -> None:
    client, _write, read = api
    for path in ("/subscribers", "/sequences", "/campaigns", "/stats"):
        assert client.get(API + path, headers=bearer(read)).status_code == 200, path


def test_requests_are_rate_limited_per_key(make_settings: Any, clock: Clock, tmp_path: Any) -> None:
    application = App(make_settings(api_rate_limit="3/minute"), mailer=RecordingMailer())
    try:
        client, write, read = keys_and_client(application, clock)
        for _ in range(3):
            assert client.get(f"{API}/sequences", headers=bearer(write)).status_code == 200
        limited = client.get(f"{API}/sequences", headers=bearer(write))
        assert error_of(limited) == (429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        # another key has its own budget
        assert client.get(f"{API}/sequences", headers=bearer(read)).status_code == 200
    finally:
        application.close()


def test_every_limit_of_the_api_rate_counts(make_settings: Any, clock: Clock) -> None:
    """``2/minute;3/hour``: past the minute the hour's limit still refuses the 4th request;
    ``Retry-After`` says when the oldest counted request leaves its window."""
    application = App(make_settings(api_rate_limit="2/minute;3/hour"), mailer=RecordingMailer())
    ticks = Ticks()
    try:
        client, write, _read = keys_and_client(application, clock, ticks)
        answers = [client.get(f"{API}/sequences", headers=bearer(write)) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert answers[2].headers["retry-after"] == "61"  # 60 s window, whole seconds, +1
        ticks.advance(61)
        answers = [client.get(f"{API}/sequences", headers=bearer(write)) for _ in range(2)]
        assert [r.status_code for r in answers] == [200, 429]  # three in the hour
        assert error_of(answers[1]) == (429, "rate_limited")
        assert answers[1].json()["error"]["message"] == (
            "too many requests for key 'shop'; slow down and retry"
        )
        assert answers[1].headers["retry-after"] == "3540"  # the first request, at 0, + 1 h
        ticks.advance(3540)
        assert client.get(f"{API}/sequences", headers=bearer(write)).status_code == 200
    finally:
        application.close()


def test_failed_attempts_are_limited_per_address(app: App, clock: Clock) -> None:
    """30 requests a minute without a valid key from one address; then 429 until the
    minute has passed. Another address, and a valid key, are not held back."""
    ticks = Ticks()
    client, write, _read = keys_and_client(app, clock, ticks)
    other = TestClient(client.app, client=("192.0.2.9", 50000))  # the same app, another peer
    wrong = bearer(write + "x")
    answers = [client.get(f"{API}/sequences", headers=wrong).status_code for _ in range(20)]
    answers += [client.get(f"{API}/sequences").status_code for _ in range(10)]
    assert answers == [401] * 30
    refused = client.get(f"{API}/sequences", headers=wrong)
    assert error_of(refused) == (429, "rate_limited")
    assert refused.headers["retry-after"] == "60"
    assert other.get(f"{API}/sequences", headers=wrong).status_code == 401
    assert client.get(f"{API}/sequences", headers=bearer(write)).status_code == 200
    ticks.advance(59)
    assert client.get(f"{API}/sequences").status_code == 429
    ticks.advance(2)
    assert client.get(f"{API}/sequences", headers=wrong).status_code == 401


def test_keys_never_reach_the_logs(
    api: tuple[TestClient, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, write, _read = api
    caplog.set_level(logging.DEBUG)
    client.post(f"{API}/subscribers", headers=bearer(write), json={"email": "x"})
    client.get(f"{API}/subscribers", headers=bearer(write + "x"))
    client.get(f"{API}/subscribers", headers=bearer(write))
    assert write not in caplog.text
    assert write[3:] not in caplog.text


# ---- create or update ------------------------------------------------------------------


def test_post_without_confirmed_goes_through_double_opt_in(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    response = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={
            "email": "New@Example.org",
            "first_name": "Ann",
            "timezone": "Europe/Paris",
            "tags": ["Newsletter"],
            "attributes": {"plan": "pro", "visits": 3, "vip": True},
            "consent": {"source": "footer form", "text": "Send me tips"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["outcome"] == "confirmation_queued"
    subscriber = body["subscriber"]
    assert subscriber["email"] == "new@example.org"
    assert subscriber["status"] == "pending"
    assert subscriber["timezone"] == "Europe/Paris"
    assert subscriber["tags"] == ["newsletter"]
    assert subscriber["attributes"] == {"plan": "pro", "visits": 3, "vip": True}
    with app.sessions() as session:
        kinds = session.scalars(select(Delivery.kind)).all()
        consent = session.scalars(select(ConsentEvent)).one()
    assert kinds == ["confirmation"]
    assert (consent.kind, consent.source, consent.consent_text) == (
        "subscribed",
        "footer form",
        "Send me tips",
    )


def test_post_confirmed_records_the_shops_consent_and_enrolls(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    response = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={
            "email": "buyer@example.org",
            "confirmed": True,
            "consent": {"source": "checkout", "text": "Yes, send me tips"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["outcome"] == "activated"
    assert response.json()["subscriber"]["status"] == "active"
    assert [
        (e["sequence"], e["next_step"]) for e in response.json()["subscriber"]["enrollments"]
    ] == [("back-pain-basics", 1)]  # step numbers are 1-based, as in the CLI
    assert "position" not in response.json()["subscriber"]["enrollments"][0]
    with app.sessions() as session:
        consent = session.scalars(select(ConsentEvent)).one()
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert (consent.kind, consent.source, consent.consent_text) == (
        "confirmed",
        "checkout",
        "Yes, send me tips",
    )


def test_post_updates_an_active_subscriber_by_email(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org", tags=["old"], attributes={"plan": "free", "x": 1})
    response = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={"email": "a@example.org", "tags": ["new"], "attributes": {"plan": "pro"}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "updated"
    assert body["subscriber"]["tags"] == ["old", "new"]
    assert body["subscriber"]["attributes"] == {"plan": "pro", "x": 1}


def test_confirmed_without_consent_source_is_refused(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    before = counts(app)
    for consent in (None, {"text": "ok"}, {"source": "  "}):
        body: dict[str, Any] = {"email": "b@example.org", "confirmed": True}
        if consent is not None:
            body["consent"] = consent
        response = client.post(f"{API}/subscribers", headers=bearer(write), json=body)
        assert error_of(response) == (422, "invalid_consent")
    assert counts(app) == before


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
@pytest.mark.parametrize("confirmed", [False, True])
def test_post_never_revives_a_withdrawn_address(
    api: tuple[TestClient, str, str], app: App, status: str, confirmed: bool
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "gone@example.org", status=status)
    before = counts(app)
    response = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={"email": "gone@example.org", "confirmed": confirmed, "consent": {"source": "c"}},
    )
    assert error_of(response) == (409, status)
    assert status in response.json()["error"]["message"]
    assert counts(app) == before
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.status)).one() == status


def test_post_never_revives_a_forgotten_address(api: tuple[TestClient, str, str], app: App) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "f@example.org")
    assert (
        client.delete(f"{API}/subscribers/f@example.org?forget=true", headers=bearer(write))
    ).json() == {"email": "f@example.org", "status": "forgotten"}
    response = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={"email": "f@example.org", "confirmed": True, "consent": {"source": "checkout"}},
    )
    assert error_of(response) == (409, "forgotten")
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not an address"}, 422, "invalid_email"),
        ({}, 422, "invalid_request"),
        ({"email": "c@example.org", "unknown": 1}, 422, "invalid_request"),
        ({"email": "c@example.org", "timezone": "Mars/Base"}, 422, "invalid_timezone"),
        ({"email": "c@example.org", "tags": ["a,b"]}, 422, "invalid_tags"),
        ({"email": "c@example.org", "tags": [f"t{n}" for n in range(21)]}, 422, "invalid_request"),
        ({"email": "c@example.org", "attributes": {"a": "x" * 501}}, 422, "invalid_attributes"),
        ({"email": "c@example.org", "attributes": {"bad name": 1}}, 422, "invalid_attributes"),
        ({"email": "c@example.org", "attributes": {"a": [1]}}, 422, "invalid_request"),
        ({"email": "c@example.org", "attributes": {"a": {"b": 1}}}, 422, "invalid_request"),
        (
            {"email": "c@example.org", "attributes": {f"f{n}": 1 for n in range(51)}},
            422,
            "invalid_attributes",
        ),
        (
            {"email": "c@example.org", "attributes": {f"f{n}": "x" * 400 for n in range(30)}},
            422,
            "invalid_attributes",
        ),
        ({"email": "c@example.org", "confirmed": "yes"}, 422, "invalid_request"),
    ],
)
def test_bad_subscriber_bodies_are_refused_and_write_nothing(
    api: tuple[TestClient, str, str], app: App, body: dict[str, Any], status: int, code: str
) -> None:
    client, write, _read = api
    before = counts(app)
    response = client.post(f"{API}/subscribers", headers=bearer(write), json=body)
    assert error_of(response) == (status, code), response.text
    assert counts(app) == before


@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"], ids=lambda r: repr(r)
)
def test_malformed_json_is_a_400(api: tuple[TestClient, str, str], app: App, raw: bytes) -> None:
    client, write, _read = api
    before = counts(app)
    for path in ("/subscribers", "/events", "/subscribers/a@example.org/tags"):
        response = client.post(
            API + path,
            headers={**bearer(write), "Content-Type": "application/json"},
            content=raw,
        )
        assert response.status_code in (400, 422), (path, response.text)
        if raw in (b"{", b"not json", b"\xff\xfe"):
            assert error_of(response) == (400, "malformed_json")
        else:
            error_of(response)
    assert counts(app) == before


def test_an_oversized_body_is_a_413(
    api: tuple[TestClient, str, str], app: App, settings: Settings
) -> None:
    client, write, _read = api
    big = {"email": "c@example.org", "first_name": "x" * (settings.max_body_bytes + 1)}
    response = client.post(f"{API}/subscribers", headers=bearer(write), json=big)
    assert error_of(response) == (413, "too_large")
    assert counts(app)["subscribers"] == 0


# ---- read ------------------------------------------------------------------------------


def test_list_pages_with_a_cursor_and_filters(api: tuple[TestClient, str, str], app: App) -> None:
    client, _write, read = api
    with transaction(app.sessions) as session:
        for n in range(5):
            add_subscriber(session, f"p{n}@example.org", tags=["vip"] if n % 2 else [])
        add_subscriber(session, "gone@example.org", status="unsubscribed", tags=["vip"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get(f"{API}/subscribers", headers=bearer(read), params=params).json()
        seen += [row["email"] for row in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"p{n}@example.org" for n in range(5)] + ["gone@example.org"]
    vip_active = client.get(
        f"{API}/subscribers", headers=bearer(read), params={"tag": "VIP", "status": "active"}
    ).json()
    assert [r["email"] for r in vip_active["data"]] == ["p1@example.org", "p3@example.org"]
    assert vip_active["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "garbage"}, "invalid_cursor"),
        ({"cursor": "WyJjYW1wYWlnbnMiLDFd"}, "invalid_cursor"),  # a campaigns cursor
        ({"limit": 0}, "invalid_request"),
        ({"limit": 201}, "invalid_request"),
        ({"status": "sleeping"}, "invalid_request"),
    ],
)
def test_bad_list_parameters(
    api: tuple[TestClient, str, str], params: dict[str, Any], code: str
) -> None:
    client, _write, read = api
    response = client.get(f"{API}/subscribers", headers=bearer(read), params=params)
    assert error_of(response)[1] == code


def test_show_one_and_unknown_email(api: tuple[TestClient, str, str], app: App) -> None:
    client, _write, read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org", attributes={"plan": "pro"})
    body = client.get(f"{API}/subscribers/A@example.org", headers=bearer(read)).json()
    assert body["subscriber"]["email"] == "a@example.org"
    assert body["subscriber"]["attributes"] == {"plan": "pro"}
    assert body["subscriber"]["enrollments"] == []
    unknown = client.get(f"{API}/subscribers/nobody@example.org", headers=bearer(read))
    assert error_of(unknown) == (404, "not_found")
    bad = client.get(f"{API}/subscribers/not-an-address", headers=bearer(read))
    assert error_of(bad) == (422, "invalid_email")
    assert error_of(client.get(f"{API}/nothing-here", headers=bearer(read)))[0] == 404


# ---- patch, delete, tags ----------------------------------------------------------------


def test_patch_merges_attributes_and_replaces_name_and_zone(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org", attributes={"plan": "free", "country": "DE"})
    response = client.patch(
        f"{API}/subscribers/a@example.org",
        headers=bearer(write),
        json={
            "first_name": "Ann",
            "timezone": "Asia/Tokyo",
            "attributes": {"plan": "pro", "country": None, "seats": 2},
        },
    )
    assert response.status_code == 200, response.text
    subscriber = response.json()["subscriber"]
    assert subscriber["first_name"] == "Ann"
    assert subscriber["timezone"] == "Asia/Tokyo"
    assert subscriber["attributes"] == {"plan": "pro", "seats": 2}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"timezone": "Nowhere/City"}, "invalid_timezone"),
        ({"attributes": {"a": "x" * 501}}, "invalid_attributes"),
        ({"attributes": {"9lives": 1}}, "invalid_attributes"),
        ({"status": "active"}, "invalid_request"),
    ],
)
def test_bad_patches_change_nothing(
    api: tuple[TestClient, str, str], app: App, body: dict[str, Any], code: str
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org", attributes={"plan": "free"})
    response = client.patch(f"{API}/subscribers/a@example.org", headers=bearer(write), json=body)
    assert error_of(response) == (422, code)
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert (subscriber.timezone, subscriber.attributes) == ("UTC", {"plan": "free"})


def test_patch_delete_and_tags_answer_404_for_an_unknown_email(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    before = counts(app)
    path = f"{API}/subscribers/nobody@example.org"
    for response in (
        client.patch(path, headers=bearer(write), json={"first_name": "X"}),
        client.delete(path, headers=bearer(write)),
        client.delete(path + "?forget=true", headers=bearer(write)),
        client.post(path + "/tags", headers=bearer(write), json={"add": ["x"]}),
    ):
        assert error_of(response) == (404, "not_found")
    assert counts(app) == before


def test_delete_unsubscribes_and_forget_erases(api: tuple[TestClient, str, str], app: App) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org")
        add_subscriber(session, "b@example.org")
    response = client.delete(f"{API}/subscribers/a@example.org", headers=bearer(write))
    assert response.json() == {"email": "a@example.org", "status": "unsubscribed"}
    response = client.delete(f"{API}/subscribers/b@example.org?forget=true", headers=bearer(write))
    assert response.json() == {"email": "b@example.org", "status": "forgotten"}
    with app.sessions() as session:
        rows = session.execute(select(Subscriber.email, Subscriber.status)).all()
        reasons = sorted(session.scalars(select(Suppression.reason)))
    assert rows == [("a@example.org", "unsubscribed")]
    assert reasons == ["forgotten", "unsubscribed"]


def test_tags_add_and_remove(api: tuple[TestClient, str, str], app: App) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org", tags=["a", "b"])
    response = client.post(
        f"{API}/subscribers/a@example.org/tags",
        headers=bearer(write),
        json={"add": ["C", "a"], "remove": ["b"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["subscriber"]["tags"] == ["a", "c"]
    both = client.post(
        f"{API}/subscribers/a@example.org/tags",
        headers=bearer(write),
        json={"add": ["x"], "remove": ["x"]},
    )
    assert error_of(both) == (422, "invalid_tags")
    too_many = client.post(
        f"{API}/subscribers/a@example.org/tags",
        headers=bearer(write),
        json={"add": [f"t{n}" for n in range(19)]},
    )
    assert error_of(too_many) == (422, "invalid_tags")
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.tags)).one() == ["a", "c"]


# ---- catalog ---------------------------------------------------------------------------


def test_sequences_campaigns_and_stats(api: tuple[TestClient, str, str], app: App) -> None:
    client, _write, read = api
    sequences = client.get(f"{API}/sequences", headers=bearer(read)).json()
    by_name = {s["name"]: s for s in sequences["data"]}
    assert by_name["back-pain-basics"]["enroll"]["on_confirm"] is True
    assert by_name["back-pain-basics"]["exit"] == {"on_tag": [], "on_event": ["purchase"]}
    assert by_name["first-week-with-your-tool"]["enroll"]["on_event"] == ["purchase"]
    assert by_name["first-week-with-your-tool"]["steps"][0]["send"] == "system/purchase-welcome"
    from newsletter.campaigns.drafts import create_campaign

    with transaction(app.sessions) as session:
        add_subscriber(session, "a@example.org")
    for minute, name in enumerate(("one", "two", "three")):
        create_campaign(
            app,
            "campaigns/seven-day-reset",
            name=name,
            include=(),
            exclude=(),
            pause_drips=False,
            now=NOW + timedelta(minutes=minute),
        )
    first = client.get(f"{API}/campaigns", headers=bearer(read), params={"limit": 2}).json()
    assert [c["name"] for c in first["data"]] == ["one", "two"]
    rest = client.get(
        f"{API}/campaigns", headers=bearer(read), params={"cursor": first["next_cursor"]}
    ).json()
    assert [c["name"] for c in rest["data"]] == ["three"]
    assert rest["next_cursor"] is None
    stats = client.get(f"{API}/stats", headers=bearer(read), params={"since": "2026-01-01"})
    assert stats.status_code == 200
    assert set(stats.json()) == {"since", "sequences", "campaigns"}
    bad = client.get(f"{API}/stats", headers=bearer(read), params={"since": "yesterday"})
    assert error_of(bad) == (400, "invalid_since")
