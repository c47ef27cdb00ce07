"""Every event type reaches a real receiver on loopback, signed and shaped exactly as the
README documents; the README's own verification snippet accepts it and rejects a tampered
body or an old timestamp; a change that rolls back reports nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.planner import plan_campaigns
from newsletter.campaigns.sending import send_campaign_now
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.drip.planner import plan_drips
from newsletter.models import Subscriber, SubscriberStatus, WebhookDelivery, WebhookEvent
from newsletter.settings import Settings
from newsletter.subscribers import add_subscriber
from newsletter.subscriptions import (
    SubscribeRequest,
    confirm,
    forget,
    subscribe,
    unsubscribe_email,
    withdraw,
)
from newsletter.tokens import make_confirm_token
from newsletter.webhooks.catalog import EVENT_TYPES
from newsletter.webhooks.delivery import deliver_webhooks
from newsletter.webhooks.service import add_webhook, ping_webhook
from tests.conftest import NOW
from tests.factories import queue_deliveries
from tests.webhook_receiver import Received, Receiver
from tests.webhook_support import SIGNATURE, readme_verify, webhook_library


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


def _subscriber(app: App, email: str) -> Subscriber:
    with app.sessions() as session:
        return session.scalars(select(Subscriber).where(Subscriber.email == email)).one()


def _make_every_event(app: App) -> None:
    """Drive the real use cases so that each of the twelve event types happens once."""
    now = NOW
    subscribe(app, SubscribeRequest(email="ann@example.org", first_name="Ann"), now=now)
    ann = _subscriber(app, "ann@example.org")
    token = make_confirm_token(ann.public_id, keys=app.settings.secret_keys, now=now)
    confirm(app, token, ip=None, now=now)  # subscriber.confirmed
    plan_drips(app, now)  # the welcome
    deliver_due(app, now=now)  # confirmation + welcome: email.sent x2
    plan_drips(app, now)  # one-step sequence is over: sequence.completed
    with transaction(app.sessions) as session:
        queue_deliveries(session, [ann.id], item_id="tips/no-such-tip")
    deliver_due(app, now=now)  # render error: email.failed
    for email in ("bob@example.org", "cy@example.org", "di@example.org"):
        add_subscriber(app, email, first_name=None, timezone=None, tags=(), confirmed=True, now=now)
    unsubscribe_email(app, "bob@example.org", now=now)  # + sequence.exited
    for email, status in (
        ("cy@example.org", SubscriberStatus.BOUNCED),
        ("di@example.org", SubscriberStatus.COMPLAINED),
    ):
        with transaction(app.sessions) as session:
            row = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
            withdraw(session, row, now=now, source="sendgrid", status=status)
    create_campaign(
        app, "campaigns/promo", name="promo", include=(), exclude=(), pause_drips=False, now=now
    )
    send_campaign_now(app, "promo", now=now)  # campaign.started
    deliver_due(app, now=now)
    plan_campaigns(app, now + timedelta(minutes=1))  # campaign.finished
    forget(app, "ann@example.org", now=now + timedelta(minutes=2))  # subscriber.forgotten


def test_every_event_arrives_signed_as_documented(hook_app: App, receiver: Receiver) -> None:
    created = add_webhook(hook_app, receiver.url, ["*"], description="all", now=NOW)
    _make_every_event(hook_app)
    ping = ping_webhook(hook_app, created.webhook.id, now=NOW + timedelta(minutes=3))
    assert ping.ok
    assert ping.delivery.last_status_code == 200
    report = deliver_webhooks(hook_app, NOW + timedelta(minutes=3))
    assert report["failed"] == 0
    assert report["retrying"] == 0

    verify = readme_verify()
    secret = created.secret
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    arrived = receiver.received
    types = [r.payload["type"] for r in arrived]
    assert set(types) == {*EVENT_TYPES, "ping"}
    assert report["delivered"] == len(arrived) - 1  # all but the ping, sent by `test`
    for request in arrived:
        assert request.headers["Content-Type"] == "application/json"
        header = request.headers["Newsletter-Signature"]
        assert SIGNATURE.fullmatch(header), header
        assert verify(secret, header, request.body)
        payload = request.payload
        assert list(payload) == ["id", "type", "created_at", "data"]
        assert re.fullmatch(r"evt_[0-9a-f]{24}", payload["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", payload["created_at"])
        # the documented HMAC, computed independently of the README's snippet
        stamp = int(header.split(",")[0].removeprefix("t="))
        assert abs(time.time() - stamp) < 60  # the real time of sending
        assert header == f"t={stamp},v1={hmac_hex(secret, stamp, request.body)}"
    assert len({r.payload["id"] for r in arrived}) == len(arrived)
    # per-endpoint order: oldest first (the ping went out of band, before the job ran)
    queued = [r.payload["created_at"] for r in arrived if r.payload["type"] != "ping"]
    assert queued == sorted(queued)

    by_type: dict[str, Received] = {}
    for request in arrived:
        by_type.setdefault(request.payload["type"], request)  # the first of each type
    forgotten = by_type["subscriber.forgotten"]
    assert forgotten.payload["data"] == {
        "subscriber": {"id": forgotten.payload["data"]["subscriber"]["id"]}
    }
    assert b"ann" not in forgotten.body
    assert b"@" not in forgotten.body
    confirmed = by_type["subscriber.confirmed"].payload["data"]["subscriber"]
    assert confirmed["email"] == "ann@example.org"
    assert confirmed["status"] == "active"
    assert confirmed["id"] == forgotten.payload["data"]["subscriber"]["id"]
    exited = by_type["sequence.exited"].payload["data"]
    assert exited["sequence"] == {"name": "basics"}
    assert exited["reason"] == "unsubscribed"
    assert exited["subscriber"]["email"] == "bob@example.org"
    assert by_type["sequence.completed"].payload["data"]["sequence"] == {"name": "basics"}
    failed = by_type["email.failed"].payload["data"]["email"]
    assert failed["item"] == "tips/no-such-tip"
    assert failed["status"] == "failed"
    assert "render" in failed["error"]
    assert by_type["subscriber.bounced"].payload["data"]["subscriber"]["status"] == "bounced"
    assert by_type["subscriber.complained"].payload["data"]["source"] == "sendgrid"
    finished = by_type["campaign.finished"].payload["data"]["campaign"]
    assert finished["name"] == "promo"
    assert finished["state"] == "sent"
    assert finished["audience_count"] == 1
    sent = [r.payload["data"] for r in arrived if r.payload["type"] == "email.sent"]
    assert {d["email"]["kind"] for d in sent} == {"confirmation", "drip", "campaign"}

    # the README's check rejects a tampered body, an old timestamp and another secret
    sample = by_type["subscriber.confirmed"]
    header = sample.headers["Newsletter-Signature"]
    assert not verify(secret, header, sample.body.replace(b"ann@", b"eve@"))
    assert not verify("whsec_" + "x" * 43, header, sample.body)
    old = int(time.time()) - 301
    stale = f"t={old},v1=" + hmac_hex(secret, old, sample.body)
    assert not verify(secret, stale, sample.body)
    fresh = int(time.time()) - 5
    assert verify(secret, f"t={fresh},v1=" + hmac_hex(secret, fresh, sample.body), sample.body)


def hmac_hex(secret: str, stamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_only_subscribed_types_are_stored_and_sent(hook_app: App, receiver: Receiver) -> None:
    add_webhook(hook_app, receiver.url, ["subscriber.confirmed"], now=NOW)
    add_subscriber(
        hook_app,
        "eve@example.org",
        first_name="Eve",
        timezone=None,
        tags=(),
        confirmed=True,
        now=NOW,
    )
    deliver_webhooks(hook_app, NOW)
    assert [r.payload["type"] for r in receiver.received] == ["subscriber.confirmed"]
    with hook_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_a_change_that_rolls_back_writes_no_event(hook_app: App, receiver: Receiver) -> None:
    add_webhook(hook_app, receiver.url, ["*"], now=NOW)
    add_subscriber(
        hook_app,
        "fay@example.org",
        first_name=None,
        timezone=None,
        tags=(),
        confirmed=True,
        now=NOW,
    )
    with hook_app.sessions() as session:
        before = session.scalar(select(func.count()).select_from(WebhookEvent))

    class Boom(Exception):
        pass

    def change_then_fail() -> None:
        with transaction(hook_app.sessions) as session:
            row = session.scalars(
                select(Subscriber).where(Subscriber.email == "fay@example.org")
            ).one()
            withdraw(session, row, now=NOW, source="test")  # records two events ...
            session.flush()
            assert session.scalar(select(func.count()).select_from(WebhookEvent)) == before + 2
            raise Boom  # ... and the change rolls back

    with pytest.raises(Boom):
        change_then_fail()
    with hook_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == before
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == before
        status = session.scalar(
            select(Subscriber.status).where(Subscriber.email == "fay@example.org")
        )
    assert status == "active"
    deliver_webhooks(hook_app, NOW)
    types = [r.payload["type"] for r in receiver.received]
    assert types == ["subscriber.created", "subscriber.confirmed"]
    assert all(json.loads(r.body)["data"]["subscriber"]["status"] for r in receiver.received)


def test_sendgrid_events_report_bounces_complaints_and_reconciled_sends(
    hook_app: App, receiver: Receiver
) -> None:
    """The SendGrid event webhook's path: suppressions and an ``unknown`` email settled as
    sent are reported too, once, however often SendGrid repeats the batch."""
    from newsletter.models import Delivery
    from tests.test_events_store import make_event, post

    add_webhook(hook_app, receiver.url, ["*"], now=NOW)
    for email in ("gus@example.org", "hal@example.org"):
        add_subscriber(
            hook_app, email, first_name=None, timezone=None, tags=(), confirmed=True, now=NOW
        )
    gus = _subscriber(hook_app, "gus@example.org")
    with transaction(hook_app.sessions) as session:
        [delivery_id] = queue_deliveries(session, [gus.id], item_id="tips/meet-your-ql")
        session.get_one(Delivery, delivery_id).status = "unknown"
    at = NOW + timedelta(minutes=5)
    batch = [
        make_event("delivered", "gus@example.org", at, delivery_id=delivery_id),
        make_event("bounce", "gus@example.org", at, message="m2", type="bounce"),
        make_event("spamreport", "hal@example.org", at, message="m3"),
    ]
    post(hook_app, batch, now=at)
    post(hook_app, batch, now=at)  # SendGrid retries: nothing new to report
    deliver_webhooks(hook_app, at)
    types = [r.payload["type"] for r in receiver.received]
    assert types.count("email.sent") == 1
    assert types.count("subscriber.bounced") == 1
    assert types.count("subscriber.complained") == 1
    sent = next(r for r in receiver.received if r.payload["type"] == "email.sent")
    assert sent.payload["data"]["email"]["delivery_id"] == delivery_id
    bounced = next(r for r in receiver.received if r.payload["type"] == "subscriber.bounced")
    assert bounced.payload["data"]["source"] == "sendgrid bounce"
