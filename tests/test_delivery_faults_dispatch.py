"""Provider faults in the middle of a batch: what the ledger keeps, what is sent again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import Mailer, OutgoingEmail, SendResult
from newsletter.delivery.outbox import OutboxMailer
from newsletter.delivery.sendgrid import SendGridMailer
from newsletter.dispatch import deliver_due
from newsletter.errors import SendingHaltedError
from newsletter.jobs import deliver
from newsletter.models import Delivery
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries
from tests.sendgrid_server import Fault, SendGridServer

ITEMS = ["tips/meet-your-ql", "tips/desk-breaks", "tips/walking", "tips/heat-or-ice"]


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(mailer: Mailer | None = None, **overrides: str) -> App:
        app = App(make_settings(**overrides), mailer=mailer)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def sendgrid_app(
    make_app: Callable[..., App], server: SendGridServer, key: str = "SG.k", **overrides: str
) -> App:
    """One request per email, one at a time: the fault order is the email order."""
    mailer = SendGridMailer(key, server.url, batch_personalizations=False, concurrency=1)
    return make_app(
        mailer,
        mail_backend="sendgrid",
        sendgrid_api_url=server.url,
        sendgrid_api_key=key,
        **overrides,
    )


def queue_items(app: App, items: Sequence[str]) -> list[int]:
    """One subscriber and one queued drip row per item (so each is its own request)."""
    ids: list[int] = []
    with transaction(app.sessions) as session:
        for item in items:
            ids += queue_deliveries(session, add_subscribers(session, 1), item_id=item)
    return ids


def rows(app: App) -> dict[int, Delivery]:
    with app.sessions() as session:
        return {d.id: d for d in session.scalars(select(Delivery))}


def test_401_after_an_accepted_request_never_resends_it(
    make_app: Callable[..., App], server: SendGridServer
) -> None:
    """The emails accepted before the 401 are recorded ``sent``; only the rest is requeued."""
    app = sendgrid_app(make_app, server)
    first, second, third = queue_items(app, ITEMS[:3])
    server.inject(Fault(), times=1)
    server.inject(Fault(status=401), times=None)
    with pytest.raises(SendingHaltedError):
        deliver_due(app, now=NOW)
    state = rows(app)
    assert state[first].status == "sent"
    assert state[first].provider_message_id
    for refused in (second, third):  # never handed over: queued, the attempt not counted
        assert (state[refused].status, state[refused].attempts) == ("queued", 0)

    server.clear_faults()
    fixed = sendgrid_app(make_app, server, key="SG.new")  # a new key lifts the halt
    deliver_due(fixed, now=NOW + timedelta(minutes=1))
    accepted = server.recorded().accepted_delivery_ids
    assert sorted(accepted) == sorted(str(i) for i in (first, second, third))
    assert {d.status for d in rows(fixed).values()} == {"sent"}


def test_rows_never_shown_to_the_provider_do_not_burn_attempts(
    make_app: Callable[..., App], server: SendGridServer
) -> None:
    """A standing 429: only the email that got the 429 counts attempts, the others wait."""
    app = sendgrid_app(make_app, server, max_attempts="3")
    ids = queue_items(app, ITEMS)
    server.inject(Fault(status=429, headers={"Retry-After": "30"}), times=None)
    for hour in range(6):
        deliver_due(app, now=NOW + timedelta(hours=hour))
    seen = {int(i) for i in server.recorded().received_delivery_ids}
    state = rows(app)
    # Each run the first email in due order gets the 429: three runs each use up ids[0],
    # then ids[1]. The others never reached SendGrid and still have every attempt left.
    assert seen == {ids[0], ids[1]}
    for tried in ids[:2]:
        assert state[tried].status == "failed"
        assert "gave up after 3 attempts" in (state[tried].error or "")
    for never in ids[2:]:
        row = state[never]
        assert (row.status, row.attempts) == ("queued", 0)
        assert (row.error or "").startswith("not attempted: HTTP 429")
        assert row.due_at == NOW + timedelta(hours=5, seconds=30)


def test_a_429_stops_every_worker_until_retry_after_has_passed(
    make_app: Callable[..., App], server: SendGridServer
) -> None:
    """Retry-After: 3600 over 2,000 queued emails in batches of 100 costs one request."""
    app = make_app(
        mail_backend="sendgrid",
        sendgrid_api_url=server.url,
        sendgrid_api_key="SG.k",
        batch_size="100",
    )
    with transaction(app.sessions) as session:
        queue_deliveries(session, add_subscribers(session, 2000), item_id=ITEMS[0])
    server.inject(Fault(status=429, headers={"Retry-After": "3600"}), times=None)

    report = deliver(app, NOW)
    assert server.recorded().requests == 1
    assert (report["batches"], report["claimed"]) == (1, 100)
    until = NOW + timedelta(seconds=3600)
    assert report["backoff_until"] == until.isoformat()

    # Another worker, a later run: nothing is claimed before the backoff ends.
    other = deliver_due(app, now=NOW + timedelta(minutes=59), worker="other")
    assert (other.claimed, other.backoff_until) == (0, until)
    assert deliver(app, NOW + timedelta(minutes=30))["claimed"] == 0
    assert server.recorded().requests == 1
    health = TestClient(create_web_app(app, clock=lambda: NOW)).get("/healthz").json()
    assert (health["sending"], health["until"]) == ("backing off", until.isoformat())

    server.clear_faults()
    done = deliver(app, until + timedelta(seconds=1))
    assert done["sent"] == 2000
    assert "backoff_until" not in done
    assert len(set(server.recorded().accepted_delivery_ids)) == 2000
    assert {d.status for d in rows(app).values()} == {"sent"}


class ExplodingMailer:
    """The outbox backend, one email per chunk, that fails unexpectedly on one email."""

    name = "exploding"
    max_batch = 1

    def __init__(self, inner: OutboxMailer, explode_on: int) -> None:
        self.inner = inner
        self.explode_on = explode_on

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        if any(m.delivery_id == self.explode_on for m in messages):
            raise RuntimeError("boom: a bug in the mailer")
        return self.inner.send_batch(messages)

    def close(self) -> None:
        self.inner.close()


def test_an_unexpected_mailer_error_marks_the_chunk_unknown_and_carries_on(
    make_app: Callable[..., App],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged at ERROR; the chunk in flight is ``unknown``, the rest goes out next batch."""
    mailer = ExplodingMailer(OutboxMailer(make_settings().effective_outbox_dir), explode_on=0)
    app = make_app(mailer)
    first, second, third = queue_items(app, ITEMS[:3])
    mailer.explode_on = second
    with caplog.at_level(logging.ERROR, logger="newsletter.dispatch"):
        report = deliver_due(app, now=NOW)
    assert report.claimed == 3
    state = rows(app)
    assert state[first].status == "sent"
    assert state[second].status == "unknown"
    assert "boom: a bug in the mailer" in (state[second].error or "")
    assert (state[third].status, state[third].attempts) == ("queued", 0)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None

    assert deliver(app, NOW)["sent"] == 1  # the job carries on with the rest
    assert rows(app)[third].status == "sent"
    assert rows(app)[second].status == "unknown"  # never resent automatically
