"""The receiver down for a while - connection refused, then 500, then slower than the
time-out - loses nothing: once it is back every event arrives, in order, each id once
after deduplication, on the documented schedule; a healthy endpoint is not held up; an
endpoint failing for 3 days is disabled and shown so, and comes back with `enable`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from newsletter.settings import Settings
from newsletter.webhooks.delivery import deliver_webhooks
from newsletter.webhooks.outbox import record_event
from newsletter.webhooks.retries import RETRY_PERIOD
from newsletter.webhooks.service import (
    add_webhook,
    enable_webhook,
    list_deliveries,
    list_webhooks,
    retry_delivery,
)
from tests.conftest import NOW
from tests.webhook_receiver import Behaviour, Receiver


class Jitter:
    """An injected jitter source: records each interval, answers its upper end."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, float]] = []

    def __call__(self, low: float, high: float) -> float:
        self.asked.append((low, high))
        return high


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    application = App(make_settings(webhook_allow_private="true", webhook_timeout_seconds="0.5"))
    yield application
    application.close()


def _events(app: App, count: int, *, now: datetime, type: str = "subscriber.created") -> list[str]:
    with transaction(app.sessions) as session:
        for n in range(count):
            record_event(session, type, {"n": n}, now=now - timedelta(microseconds=count - n))
    with app.sessions() as session:
        return list(session.scalars(select(WebhookEvent.public_id).order_by(WebhookEvent.id)))


def _head(app: App, endpoint_id: int) -> WebhookDelivery:
    with app.sessions() as session:
        return session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
            .limit(1)
        ).one()


def test_a_receiver_down_for_a_while_gets_everything_once_it_is_back(app: App) -> None:
    down = Receiver()  # not started: connection refused
    healthy = Receiver().start()
    try:
        first = add_webhook(app, down.url, ["subscriber.created"], now=NOW).webhook.id
        add_webhook(app, healthy.url, ["subscriber.created"], now=NOW)
        ids = _events(app, 5, now=NOW)
        jitter = Jitter()

        t0 = NOW
        report = deliver_webhooks(app, t0, uniform=jitter)
        assert report["retrying"] == 1
        assert report["delivered"] == 5
        assert healthy.ids() == ids
        head = _head(app, first)
        assert head.attempts == 1
        assert "ConnectError" in (head.last_error or "")
        assert head.next_attempt_at == t0 + timedelta(minutes=1)

        down.start()
        down.behaviour = Behaviour(status=500)
        assert deliver_webhooks(app, t0 + timedelta(seconds=59), uniform=jitter)["endpoints"] == 0
        t1 = t0 + timedelta(minutes=1)
        assert deliver_webhooks(app, t1, uniform=jitter)["retrying"] == 1
        head = _head(app, first)
        assert (head.attempts, head.last_status_code) == (2, 500)
        assert head.next_attempt_at == t1 + timedelta(minutes=2)

        down.behaviour = Behaviour(delay=1.0)  # slower than the 0.5 s time-out
        t2 = t1 + timedelta(minutes=2)
        assert deliver_webhooks(app, t2, uniform=jitter)["retrying"] == 1
        head = _head(app, first)
        assert head.attempts == 3
        assert head.last_error == "timed out after 0.5 s"
        assert head.next_attempt_at == t2 + timedelta(minutes=4)
        # the documented schedule: 1, 2, 4 minutes, each drawn from its upper half
        assert jitter.asked == [(30.0, 60.0), (60.0, 120.0), (120.0, 240.0)]

        down.behaviour = Behaviour()
        report = deliver_webhooks(app, t2 + timedelta(minutes=4), uniform=jitter)
        assert report["delivered"] == 5
        time.sleep(1.0)  # the slow answer's handler records its request when it wakes
        seen = down.ids()
        assert list(dict.fromkeys(seen)) == ids  # every event, in order, once after dedup
        assert seen.count(ids[0]) == 3  # the 500, the slow answer, then the 200
        assert [d.status for d in list_deliveries(app, first)] == ["delivered"] * 5
        assert all(r.payload["id"] in ids for r in down.received)
    finally:
        down.stop()
        healthy.stop()


def test_an_endpoint_failing_for_three_days_is_disabled_then_enabled_again(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()  # down
    endpoint_id = add_webhook(app, receiver.url, ["subscriber.created"], now=NOW).webhook.id
    ids = _events(app, 3, now=NOW)
    now, runs = NOW, 0
    with caplog.at_level(logging.WARNING, logger="newsletter.webhooks.queue"):
        while True:
            report = deliver_webhooks(app, now, uniform=lambda low, high: high)
            runs += 1
            if report["disabled"]:
                break
            with app.sessions() as session:
                blocked = session.get_one(WebhookEndpoint, endpoint_id).blocked_until
            assert blocked is not None
            assert blocked <= NOW + RETRY_PERIOD
            now = blocked
    assert now == NOW + RETRY_PERIOD  # the last attempt is at the 3-day mark
    # waits of 1, 2, 4 ... 256 minutes (8.5 h), ten of 6 hours, then the last to 72 h
    assert runs == 21
    head = _head(app, endpoint_id)
    assert head.status == "failed"
    assert head.attempts == runs
    assert any("disabled" in r.getMessage() for r in caplog.records)
    [view] = list_webhooks(app, now=now)
    assert not view.enabled
    assert "kept failing for 3 days" in (view.disabled_reason or "")
    assert (view.pending, view.failed) == (2, 1)
    assert deliver_webhooks(app, now + timedelta(days=1))["endpoints"] == 0

    receiver.start()
    try:
        enable_webhook(app, endpoint_id, now=now)
        assert deliver_webhooks(app, now)["delivered"] == 2
        assert receiver.ids() == ids[1:]
        retry_delivery(app, head.id, now=now)
        assert deliver_webhooks(app, now)["delivered"] == 1
        assert receiver.ids() == [*ids[1:], ids[0]]
    finally:
        receiver.stop()


def test_a_slow_endpoint_does_not_hold_up_the_others(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    app = App(make_settings(webhook_allow_private="true", webhook_timeout_seconds="2"))
    slow = Receiver(behaviour=Behaviour(delay=0.5)).start()
    fast = [Receiver().start() for _ in range(3)]
    try:
        for receiver in [slow, *fast]:
            add_webhook(app, receiver.url, ["subscriber.created"], now=NOW)
        _events(app, 6, now=NOW)
        report = deliver_webhooks(app, NOW)
        assert report["delivered"] == 24
        last_fast = max(r.at for f in fast for r in f.received)
        assert last_fast < slow.received[-1].at - 1.0  # done while the slow one still ran
    finally:
        for receiver in [slow, *fast]:
            receiver.stop()
        app.close()


def test_the_address_is_checked_again_at_send_time(
    make_settings: Callable[..., Settings],
) -> None:
    """An endpoint accepted while private addresses were allowed (or whose name resolved
    to a public address then: DNS rebinding) is refused when it resolves inward now."""
    receiver = Receiver().start()
    allowed = App(make_settings(webhook_allow_private="true"))
    strict = App(make_settings())
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        endpoint_id = add_webhook(allowed, url, ["subscriber.created"], now=NOW).webhook.id
        _events(allowed, 2, now=NOW)
        report = deliver_webhooks(strict, NOW, uniform=lambda low, high: high)
        assert report["retrying"] == 1
        assert receiver.received == []
        head = _head(strict, endpoint_id)
        assert "resolves to a loopback, link-local or private address" in (head.last_error or "")
        assert deliver_webhooks(allowed, NOW + timedelta(minutes=1))["delivered"] == 2
    finally:
        receiver.stop()
        allowed.close()
        strict.close()


def test_two_workers_at_once_send_each_event_once_in_order(
    make_settings: Callable[..., Settings],
) -> None:
    """Per-endpoint claims (SKIP LOCKED on PostgreSQL): two workers running side by side
    over many endpoints never send to one endpoint together."""
    app = App(make_settings(webhook_allow_private="true", webhook_batch_size="7"))
    receivers = [Receiver().start() for _ in range(6)]
    try:
        for receiver in receivers:
            add_webhook(app, receiver.url, ["subscriber.created"], now=NOW)
        ids = _events(app, 30, now=NOW)
        results: list[dict[str, int]] = []

        def run(name: str) -> None:
            results.append(deliver_webhooks(app, NOW, worker=name))

        threads = [threading.Thread(target=run, args=(f"w{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sum(r["delivered"] for r in results) == 6 * 30
        for receiver in receivers:
            assert receiver.ids() == ids  # each once, oldest first
    finally:
        for receiver in receivers:
            receiver.stop()
        app.close()


def test_an_idle_run_starts_no_thread_and_a_busy_one_its_pool(app: App) -> None:
    """Nothing pending: the run claims once, in the caller's thread, and starts no worker
    thread (the scheduler runs the job every minute); with work it starts the pool."""
    started: list[str] = []

    def note_thread(*_args: object) -> None:
        name = threading.current_thread().name
        if name not in started:
            started.append(name)
        threading.setprofile(None)  # type: ignore[arg-type]

    receiver = Receiver().start()
    threading.setprofile(note_thread)  # called first in every thread started from here
    try:
        add_webhook(app, receiver.url, ["subscriber.created"], now=NOW)
        assert deliver_webhooks(app, NOW)["endpoints"] == 0
        idle = [n for n in started if n.startswith("webhooks")]
        _events(app, 2, now=NOW)
        assert deliver_webhooks(app, NOW)["delivered"] == 2
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        receiver.stop()
    assert idle == []
    busy = [n for n in started if n.startswith("webhooks")]
    assert 1 <= len(busy) <= app.settings.webhook_concurrency
