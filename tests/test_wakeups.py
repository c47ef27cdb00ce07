"""The background process's loop routes wake-ups by their byte: ``w`` sends confirmations,
``e`` drains the SendGrid event inbox. Under ``newsletter serve`` the web process only
stores a webhook body and wakes its child, which applies it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import wakeups
from newsletter.app import App
from newsletter.events.inbox import DrainReport, accept
from newsletter.models import Subscriber, Suppression
from newsletter.settings import Settings, load_settings
from newsletter.wakeups import CONFIRMATIONS, EVENTS, WEBHOOKS_BUSY, WEBHOOKS_IDLE, WakeLoop
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.servers import free_port
from tests.test_confirmation_sender import NEWSLETTER, _child, _gone, _listening, _wait
from tests.test_event_inbox import body_of, inbox_state
from tests.test_events_store import T0, add_subscriber, make_event
from tests.test_webhook_signature import Signer


@pytest.fixture
def loop_app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    application.close()


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every confirmation pass and drain the loop runs (the real ones run)."""
    seen: list[str] = []
    real_confirmations = wakeups.deliver_confirmations
    real_drain = wakeups.drain

    def confirmations(*args: Any, **kwargs: Any) -> int:
        seen.append("confirmations")
        return real_confirmations(*args, **kwargs)

    def drain(*args: Any, **kwargs: Any) -> DrainReport:
        seen.append("drain")
        return real_drain(*args, **kwargs)

    monkeypatch.setattr(wakeups, "deliver_confirmations", confirmations)
    monkeypatch.setattr(wakeups, "drain", drain)
    return seen


def applied(app: App) -> list[bool]:
    return [done for done, _, _ in inbox_state(app)]


def start(app: App, read_end: int, **options: Any) -> threading.Thread:
    options = {"poll": 3600, "quiet": 0.001, "longest": 0.01, "drain_yield": 0.01, **options}
    thread = threading.Thread(
        target=WakeLoop(app, read_end, clock=lambda: NOW, **options).run, daemon=True
    )
    thread.start()
    return thread


def test_each_byte_starts_its_own_pass_and_the_loop_ends_with_the_pipe(
    loop_app: App, passes: list[str]
) -> None:
    """At start one pass of each kind (a body left pending is applied); then ``e`` drains
    (the new body is applied) without a confirmation pass, ``w`` the reverse."""
    accept(loop_app, body_of([make_event("delivered", "a@example.org", T0)]), now=NOW)
    read_end, write_end = os.pipe()
    thread = start(loop_app, read_end)
    try:
        assert _wait(lambda: len(passes) == 2 and applied(loop_app) == [True], 30)
        assert passes == ["confirmations", "drain"]
        accept(loop_app, body_of([make_event("delivered", "b@example.org", T0)]), now=NOW)
        os.write(write_end, EVENTS)
        assert _wait(lambda: applied(loop_app) == [True, True], 30)
        assert _wait(lambda: len(passes) == 3, 30)
        os.write(write_end, CONFIRMATIONS)
        assert _wait(lambda: len(passes) == 4, 30)
        time.sleep(0.05)
        assert passes == ["confirmations", "drain", "drain", "confirmations"]
    finally:
        os.close(write_end)
        thread.join(30)
        os.close(read_end)
    assert not thread.is_alive()


def test_a_confirmation_woken_during_a_drain_is_sent_between_two_bodies(
    loop_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``w`` read while a drain pauses between bodies runs a confirmation pass there,
    not after the whole backlog."""
    order: list[str] = []
    read_end, write_end = os.pipe()

    def draining(_app: App, *, pause: Callable[[], None], **_kwargs: Any) -> DrainReport:
        order.append("body 1")
        os.write(write_end, CONFIRMATIONS)  # a subscribe request answered meanwhile
        pause()
        order.append("body 2")
        return DrainReport()

    def confirmations(*_args: Any, **_kwargs: Any) -> int:
        order.append("confirmations")
        return 0

    monkeypatch.setattr(wakeups, "drain", draining)
    monkeypatch.setattr(wakeups, "deliver_confirmations", confirmations)
    loop = WakeLoop(loop_app, read_end, clock=lambda: NOW, quiet=0.001, drain_yield=0.01)
    loop.due = {EVENTS}
    loop._serve()
    os.close(write_end)
    os.close(read_end)
    assert order == ["body 1", "confirmations", "body 2"]


def test_a_drain_under_way_when_the_pipe_closes_stops_after_its_transaction(
    loop_app: App,
) -> None:
    """The server stopped: the drain that learns it between two bodies commits the one it
    takes next, then stops, and no other drain starts; the rest stays pending for the
    next process or the ``events`` job."""
    for n in range(5):
        accept(loop_app, body_of([make_event("delivered", f"s{n}@example.org", T0)]), now=NOW)
    read_end, write_end = os.pipe()
    os.close(write_end)  # the drain at start learns it after its first body
    WakeLoop(loop_app, read_end, clock=lambda: NOW, poll=3600, quiet=0.001).run()
    os.close(read_end)
    assert applied(loop_app) == [True, True, False, False, False]


def drain_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name == "sendgrid-events"}


class Told:
    """What the web process tells its background process (``EventWakeups``)."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def wake_events(self) -> None:
        self.said.append("body")

    def webhooks_busy(self, busy: bool) -> None:
        self.said.append("busy" if busy else "idle")


def test_with_a_background_process_the_web_process_only_stores_and_tells_it(
    make_settings: Any,
) -> None:
    """``wake_events`` given: the webhook answers once the body is committed and tells
    the other process (requests in flight, then the body); nothing is applied here."""
    signer = Signer()
    app = App(make_settings(sendgrid_webhook_public_key=signer.public_key))
    told = Told()
    drains_before = drain_threads()  # other tests' apps may have left theirs
    try:
        web = create_web_app(app, clock=lambda: NOW, wake_events=told)
        body = body_of([make_event("bounce", "ann@example.org", T0, type="bounce")])
        with TestClient(web) as client:
            response = client.post(
                "/webhooks/sendgrid", content=body, headers=signer.headers(body, NOW)
            )
            assert response.json() == {"status": "accepted"}
            refused = client.post("/webhooks/sendgrid", content=body)  # unsigned: 401
            assert refused.status_code == 401
        assert told.said == ["busy", "body", "idle", "busy", "idle"]
        assert inbox_state(app) == [(False, None, None)]
        assert drain_threads() == drains_before  # no drain thread started here
    finally:
        app.close()


@pytest.mark.parametrize(
    ("idle_after", "drain_yield", "least", "most"),
    [
        pytest.param(None, 0.0, 0.0, 0.5, id="not-busy-no-wait"),
        pytest.param(0.3, 10.0, 0.2, 5.0, id="busy-until-idle"),  # the timer starts first
        pytest.param(None, 0.3, 0.3, 5.0, id="busy-at-most-the-yield"),
    ],
)
def test_a_drain_defers_to_webhook_requests_in_flight_at_most_its_yield(
    loop_app: App,
    monkeypatch: pytest.MonkeyPatch,
    idle_after: float | None,
    drain_yield: float,
    least: float,
    most: float,
) -> None:
    """Before each body the drain waits while the web process says webhook requests are
    being answered, until it says none is or ``drain_yield`` passed."""
    read_end, write_end = os.pipe()
    waited: list[float] = []

    def draining(_app: App, *, pause: Callable[[], None], **_kwargs: Any) -> DrainReport:
        started = time.monotonic()
        pause()
        waited.append(time.monotonic() - started)
        return DrainReport()

    monkeypatch.setattr(wakeups, "drain", draining)
    if drain_yield:
        os.write(write_end, WEBHOOKS_BUSY)
    timer = None
    if idle_after is not None:
        timer = threading.Timer(idle_after, os.write, (write_end, WEBHOOKS_IDLE))
        timer.start()
    loop = WakeLoop(loop_app, read_end, clock=lambda: NOW, drain_yield=drain_yield or 10.0)
    loop.due = {EVENTS}
    loop._serve()
    if timer is not None:
        timer.join()
    os.close(write_end)
    os.close(read_end)
    assert least <= waited[0] < most
    assert loop.web_busy is (idle_after is None and bool(drain_yield))


def test_serve_applies_webhook_bodies_in_its_background_process(
    cli_env: dict[str, Any],
) -> None:
    """A signed bounce posted to a real ``newsletter serve`` is applied by its child: with
    the child stopped (SIGSTOP) the body stays pending however long the web process runs;
    once it continues, the bounce suppresses the address."""
    signer = Signer()
    env = {
        **os.environ,
        **cli_env,
        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key,
    }
    app = App(load_settings(env))
    try:
        add_subscriber(app, "ann@example.org")
        port = free_port()
        server = subprocess.Popen(
            [NEWSLETTER, "serve", "--no-scheduler", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert _wait(lambda: _listening(port, server))
            child = _child(server)
            os.kill(child, signal.SIGSTOP)
            events = [make_event("bounce", "ann@example.org", T0, type="bounce")]
            body = json.dumps(events).encode()
            at = datetime.now(UTC)  # the real server checks the signature's age
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                answer = client.post(
                    "/webhooks/sendgrid", content=body, headers=signer.headers(body, at)
                )
            assert answer.json() == {"status": "accepted"}
            time.sleep(1.5)  # the web process's drain would have applied it by now
            assert inbox_state(app) == [(False, None, None)]
            os.kill(child, signal.SIGCONT)
            assert _wait(lambda: applied(app) == [True], 60)
            with app.sessions() as session:
                status = session.scalar(select(Subscriber.status))
                reasons = list(session.scalars(select(Suppression.reason)))
            assert (status, reasons) == ("bounced", ["bounced"])
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            assert _wait(lambda: _gone(child))
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    finally:
        app.close()
