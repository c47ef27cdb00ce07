"""``/api/v1/webhooks`` with a write key: add, list, test, deliveries, retry, rotate, enable,
remove against a real receiver on loopback; every bad input a 4xx in the envelope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import WebhookDelivery, WebhookEndpoint
from newsletter.settings import Settings
from tests.api_support import Clock, bearer, keys_and_client
from tests.conftest import NOW
from tests.webhook_receiver import Receiver
from tests.webhook_support import readme_verify, webhook_library

API = "/api/v1/webhooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def hook_app(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[App]:
    app = App(make_settings(**webhook_library(tmp_path / "lib")))
    yield app
    app.close()


@pytest.fixture
def api(hook_app: App) -> tuple[TestClient, str, str]:
    return keys_and_client(hook_app, Clock(NOW))


def error_of(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


def endpoints(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


def test_add_test_list_rotate_and_remove_over_the_api(
    hook_app: App, api: tuple[TestClient, str, str], receiver: Receiver
) -> None:
    client, write, _read = api
    added = client.post(
        API,
        json={"url": receiver.url, "events": ["subscriber.created"], "description": "crm"},
        headers=bearer(write),
    )
    assert added.status_code == 201, added.text
    body = added.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    hook = body["webhook"]
    assert (hook["url"], hook["events"], hook["enabled"], hook["description"]) == (
        receiver.url,
        ["subscriber.created"],
        True,
        "crm",
    )
    listed = client.get(API, headers=bearer(write)).json()
    assert [w["id"] for w in listed["data"]] == [hook["id"]]
    assert "secret" not in listed["data"][0]  # shown once, at creation only

    pinged = client.post(f"{API}/{hook['id']}/test", headers=bearer(write))
    assert pinged.status_code == 200, pinged.text
    assert pinged.json()["ok"] is True
    (ping,) = receiver.received
    assert ping.payload["type"] == "ping"
    assert readme_verify()(secret, ping.headers["Newsletter-Signature"], ping.body)

    deliveries = client.get(
        f"{API}/deliveries", params={"webhook_id": hook["id"]}, headers=bearer(write)
    ).json()["data"]
    assert [(d["type"], d["status"]) for d in deliveries] == [("ping", "delivered")]

    rotated = client.post(f"{API}/{hook['id']}/rotate-secret", headers=bearer(write)).json()
    assert rotated["secret"] != secret
    assert rotated["webhook"]["previous_secret_valid_until"] is not None

    removed = client.delete(f"{API}/{hook['id']}", headers=bearer(write))
    assert removed.status_code == 200
    assert endpoints(hook_app) == 0
    assert error_of(client.delete(f"{API}/{hook['id']}", headers=bearer(write))) == (
        404,
        "not_found",
    )


def test_retry_and_enable_a_failed_endpoint(
    hook_app: App, api: tuple[TestClient, str, str], receiver: Receiver
) -> None:
    client, write, _read = api
    hook = client.post(
        API, json={"url": receiver.url, "events": ["*"]}, headers=bearer(write)
    ).json()["webhook"]
    receiver.stop()  # the ping fails: refused
    assert client.post(f"{API}/{hook['id']}/test", headers=bearer(write)).json()["ok"] is False
    (failed,) = client.get(
        f"{API}/deliveries", params={"status": "failed"}, headers=bearer(write)
    ).json()["data"]
    retried = client.post(f"{API}/deliveries/{failed['id']}/retry", headers=bearer(write))
    assert retried.status_code == 200, retried.text
    assert retried.json()["delivery"]["status"] == "pending"
    with transaction(hook_app.sessions) as session:
        session.execute(
            update(WebhookEndpoint).values(enabled=False, disabled_reason="kept failing")
        )
    enabled = client.post(f"{API}/{hook['id']}/enable", headers=bearer(write)).json()
    assert (enabled["webhook"]["enabled"], enabled["webhook"]["disabled_reason"]) == (True, None)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"url": "ftp://example.org/x", "events": ["ping"]}, 422, "invalid_webhook"),
        ({"url": "https://example.org/x", "events": ["no.such.event"]}, 422, "invalid_webhook"),
        ({"url": "https://example.org/x", "events": []}, 422, None),
        ({"url": "https://example.org/x"}, 422, None),
        ({"url": "https://example.org/x", "events": ["*"], "extra": 1}, 422, None),
        ({"url": "x" * 3000, "events": ["*"]}, 422, None),
    ],
    ids=["scheme", "unknown-event", "no-events", "missing-events", "extra-field", "long-url"],
)
def test_bad_bodies_are_refused_and_write_nothing(
    hook_app: App,
    api: tuple[TestClient, str, str],
    body: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    client, write, _read = api
    got = error_of(client.post(API, json=body, headers=bearer(write)))
    assert got[0] == status
    if code is not None:
        assert got[1] == code
    assert endpoints(hook_app) == 0


def test_private_receivers_are_refused_unless_allowed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    overrides = webhook_library(tmp_path / "lib")
    overrides["webhook_allow_private"] = "false"
    app = App(make_settings(**overrides))
    try:
        client, write, _read = keys_and_client(app, Clock(NOW))
        response = client.post(
            API, json={"url": "http://127.0.0.1:9/x", "events": ["*"]}, headers=bearer(write)
        )
        assert error_of(response) == (422, "invalid_webhook")
        assert endpoints(app) == 0
    finally:
        app.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("post", ""),
        ("delete", "/1"),
        ("post", "/1/test"),
        ("post", "/1/enable"),
        ("post", "/1/rotate-secret"),
        ("get", "/deliveries"),
        ("post", "/deliveries/1/retry"),
    ],
)
def test_every_route_needs_a_write_key(
    api: tuple[TestClient, str, str], method: str, path: str
) -> None:
    client, _write, read = api
    kwargs: dict[str, Any] = (
        {"json": {"url": "https://e.org/", "events": ["*"]}} if method == "post" else {}
    )
    assert error_of(getattr(client, method)(API + path, **kwargs))[0] == 401
    assert error_of(getattr(client, method)(API + path, headers=bearer(read), **kwargs))[0] == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/0"), ("post", "/abc/test"), ("post", "/99999999999/enable")],
    ids=["zero", "not-a-number", "too-big"],
)
def test_bad_ids_are_422_in_the_envelope(
    api: tuple[TestClient, str, str], method: str, path: str
) -> None:
    client, write, _read = api
    assert error_of(getattr(client, method)(API + path, headers=bearer(write)))[0] == 422


def test_unknown_ids_are_404(api: tuple[TestClient, str, str], hook_app: App) -> None:
    client, write, _read = api
    assert error_of(client.post(f"{API}/7/test", headers=bearer(write))) == (404, "not_found")
    assert error_of(client.post(f"{API}/deliveries/7/retry", headers=bearer(write))) == (
        404,
        "not_found",
    )
    with hook_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_a_sequence_exit_is_reported_with_its_reason(hook_app: App, receiver: Receiver) -> None:
    """``sequence exit`` (and ``exit:`` triggers) report ``sequence.exited`` in the same
    transaction as the exit, with the reason."""
    from newsletter.automation.use_cases import exit_emails
    from newsletter.subscribers import add_subscriber
    from newsletter.webhooks.delivery import deliver_webhooks
    from newsletter.webhooks.service import add_webhook

    add_webhook(hook_app, receiver.url, ["sequence.exited"], now=NOW)
    add_subscriber(
        hook_app,
        "leaver@example.org",
        first_name=None,
        timezone=None,
        tags=(),
        confirmed=True,
        now=NOW,
    )
    (outcome,) = exit_emails(hook_app, "basics", ["leaver@example.org"], now=NOW)
    assert outcome.outcome == "exited"
    deliver_webhooks(hook_app, NOW)
    (arrived,) = receiver.received
    assert arrived.payload["type"] == "sequence.exited"
    assert arrived.payload["data"]["sequence"] == {"name": "basics"}
    assert arrived.payload["data"]["reason"] == "manual"
