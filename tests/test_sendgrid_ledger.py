"""SendGrid faults end to end: the ledger state each leaves and the requests it costs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.errors import SendingHaltedError
from newsletter.models import Delivery
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries
from tests.sendgrid_server import Fault, SendGridServer


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running


@pytest.fixture
def make_sg_app(
    make_settings: Callable[..., Settings], server: SendGridServer
) -> Iterator[Callable[..., App]]:
    """Apps sending through the local server; keyword overrides as for ``make_settings``."""
    apps: list[App] = []

    def make(**overrides: str) -> App:
        values = {"sendgrid_api_key": "SG.right-key", **overrides}
        app = App(make_settings(mail_backend="sendgrid", sendgrid_api_url=server.url, **values))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def sg_app(make_sg_app: Callable[..., App]) -> App:
    return make_sg_app()


def queue(app: App, count: int) -> list[int]:
    with transaction(app.sessions) as session:
        subscriber_ids = add_subscribers(session, count)
        return queue_deliveries(session, subscriber_ids, item_id="tips/meet-your-ql")


def rows(app: App) -> list[Delivery]:
    with app.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_202_marks_sent_and_keeps_the_message_id(sg_app: App, server: SendGridServer) -> None:
    ids = queue(sg_app, 3)
    deliver_due(sg_app, now=NOW)
    assert [(r.status, r.attempts) for r in rows(sg_app)] == [("sent", 1)] * 3
    assert all(r.provider_message_id for r in rows(sg_app))
    recorded = server.recorded()
    assert sorted(recorded.accepted_delivery_ids) == sorted(str(i) for i in ids)
    assert recorded.requests == 1  # same content, per-recipient fields only: one request


def test_400_fails_permanently_with_sendgrid_message(sg_app: App, server: SendGridServer) -> None:
    """A batched request that answers 400 naming no recipient is tried once per recipient
    (to find the culprit); those answering 400 alone fail for good."""
    queue(sg_app, 2)
    server.inject(Fault(status=400), times=3)
    deliver_due(sg_app, now=NOW)
    states = {(r.status, r.error is not None) for r in rows(sg_app)}
    assert states == {("failed", True)}
    assert server.recorded().requests == 3  # the batch, then each recipient alone once
    deliver_due(sg_app, now=NOW + timedelta(hours=1))
    assert server.recorded().requests == 3  # never retried


def test_400_on_a_batch_fails_only_the_recipient_sendgrid_names(
    sg_app: App, server: SendGridServer
) -> None:
    """A 400 whose field names one personalization fails that recipient; the rest of the
    batch is resent once, as one request, and delivered."""
    ids = queue(sg_app, 4)
    server.inject(
        Fault(
            status=400,
            message="Does not contain a valid address.",
            error_field=("personalizations.2.to.0.email"),
        ),
        times=1,
    )
    deliver_due(sg_app, now=NOW)
    assert [(r.id, r.status) for r in rows(sg_app)] == [
        (ids[0], "sent"),
        (ids[1], "sent"),
        (ids[2], "failed"),
        (ids[3], "sent"),
    ]
    assert rows(sg_app)[2].error == (
        "HTTP 400: Does not contain a valid address. (field personalizations.2.to.0.email)"
    )
    recorded = server.recorded()
    assert recorded.requests == 2
    assert sorted(recorded.accepted_delivery_ids) == sorted(str(i) for i in ids if i != ids[2])


def test_429_waits_until_the_reset_and_makes_no_storm(sg_app: App, server: SendGridServer) -> None:
    queue(sg_app, 2)
    server.inject(Fault(status=429, headers={"Retry-After": "120"}), times=1)
    deliver_due(sg_app, now=NOW)
    after = rows(sg_app)
    assert {r.status for r in after} == {"queued"}
    assert {r.due_at for r in after} == {NOW + timedelta(seconds=120)}
    assert server.recorded().requests == 1
    assert deliver_due(sg_app, now=NOW + timedelta(seconds=60)).claimed == 0
    assert server.recorded().requests == 1
    deliver_due(sg_app, now=NOW + timedelta(seconds=121))
    assert {r.status for r in rows(sg_app)} == {"sent"}
    assert server.recorded().requests == 2


def test_500_backs_off_then_succeeds(sg_app: App, server: SendGridServer) -> None:
    queue(sg_app, 1)
    server.inject(Fault(status=500), times=1)
    deliver_due(sg_app, now=NOW)
    (row,) = rows(sg_app)
    assert row.status == "queued"
    assert timedelta(seconds=30) <= row.due_at - NOW <= timedelta(seconds=60)
    deliver_due(sg_app, now=NOW + timedelta(minutes=2))
    assert rows(sg_app)[0].status == "sent"
    assert rows(sg_app)[0].attempts == 2


def test_attempts_are_capped(make_sg_app: Callable[..., App], server: SendGridServer) -> None:
    app = make_sg_app(max_attempts="2")
    queue(app, 1)
    server.inject(Fault(status=503), times=None)
    deliver_due(app, now=NOW)
    deliver_due(app, now=NOW + timedelta(hours=1))
    (row,) = rows(app)
    assert row.status == "failed"
    assert row.error is not None
    assert row.error.startswith("gave up after 2 attempts")
    assert server.recorded().requests == 2


def test_dropped_connection_after_the_request_is_unknown_and_never_resent(
    sg_app: App, server: SendGridServer
) -> None:
    queue(sg_app, 2)
    server.inject(Fault(drop=True), times=1)
    deliver_due(sg_app, now=NOW)
    assert {r.status for r in rows(sg_app)} == {"unknown"}
    deliver_due(sg_app, now=NOW + timedelta(days=1))
    assert server.recorded().requests == 1


def test_401_halts_all_sending_loudly_until_the_key_changes(
    make_sg_app: Callable[..., App],
    sg_app: App,
    server: SendGridServer,
    cli_env: dict[str, Any],
) -> None:
    queue(sg_app, 3)
    server.inject(Fault(status=401), times=None)
    with pytest.raises(SendingHaltedError, match="NEWSLETTER_SENDGRID_API_KEY"):
        deliver_due(sg_app, now=NOW)
    assert {r.status for r in rows(sg_app)} == {"queued"}  # nothing lost
    assert server.recorded().requests == 1
    env = {
        **cli_env,
        "NEWSLETTER_MAIL_BACKEND": "sendgrid",
        "NEWSLETTER_SENDGRID_API_KEY": "SG.right-key",
        "NEWSLETTER_SENDGRID_API_URL": server.url,
    }
    result = CliRunner().invoke(main, ["tick", "--job", "deliver"], env=env)
    assert result.exit_code == 1
    assert "sending is halted" in result.stderr
    assert server.recorded().requests == 1  # halted: no request at all
    health = TestClient(create_web_app(sg_app)).get("/healthz").json()
    assert health["status"] == "degraded"
    assert health["sending"] == "halted"
    server.clear_faults()
    fixed = make_sg_app(sendgrid_api_key="SG.new-key")
    deliver_due(fixed, now=NOW + timedelta(minutes=1))
    assert {r.status for r in rows(fixed)} == {"sent"}


def test_marketing_email_waits_without_a_postal_address(
    make_sg_app: Callable[..., App], server: SendGridServer
) -> None:
    """POSTAL_ADDRESS is required in every marketing footer: without it nothing is claimed."""
    app = make_sg_app(postal_address="")
    queue(app, 2)
    assert deliver_due(app, now=NOW).claimed == 0
    assert {r.status for r in rows(app)} == {"queued"}
    assert server.recorded().requests == 0
