"""Confirmations sent by a process of their own (``newsletter serve``): the request path
only writes and wakes the sender; the sender sends each confirmation once, at start for
rows left queued, on every wake-up, and stops when the pipe closes."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli.background import BackgroundProcess
from newsletter.confirmations import deliver_confirmations, settle
from newsletter.models import Delivery, DeliveryStatus
from newsletter.settings import Settings, load_settings
from newsletter.subscriptions import SubscribeOutcome, SubscribeRequest, subscribe
from newsletter.wakeups import WakeLoop
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.mailbox import read_outbox
from tests.mailers import RecordingMailer
from tests.servers import free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def run_sender(app: App, wake: int, **options: Any) -> None:
    """The background process's loop with confirmations only."""
    WakeLoop(app, wake, events=False, **options).run()


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def sender_app(settings: Settings, mailer: RecordingMailer) -> Iterator[App]:
    application = App(settings, mailer=mailer)
    yield application
    application.close()


def queue(app: App, *emails: str, at: datetime = NOW) -> None:
    for email in emails:
        outcome = subscribe(app, SubscribeRequest(email=email), now=at)
        assert outcome is SubscribeOutcome.CONFIRMATION_QUEUED


def statuses(app: App) -> Counter[str]:
    with app.sessions() as session:
        return Counter(session.scalars(select(Delivery.status)))


def sent_to(mailer: RecordingMailer) -> list[str]:
    return sorted(message.to_email for message in mailer.sent)


def later() -> datetime:
    return NOW + timedelta(minutes=1)


def test_a_pass_sends_every_due_confirmation_once_in_batches(
    sender_app: App, mailer: RecordingMailer
) -> None:
    queue(sender_app, *(f"r{i}@example.org" for i in range(5)))
    pauses = []
    claimed = deliver_confirmations(
        sender_app, clock=later, batch=2, pause=lambda: pauses.append(1), worker="t"
    )
    assert claimed == 5
    assert len(pauses) == 3  # after the claims of 2, 2 and 1; the empty fourth ends it
    assert sent_to(mailer) == [f"r{i}@example.org" for i in range(5)]
    assert deliver_confirmations(sender_app, clock=later) == 0
    assert len(mailer.sent) == 5


def test_the_sender_sends_at_start_on_each_wake_up_and_stops_when_the_pipe_closes(
    sender_app: App, mailer: RecordingMailer
) -> None:
    queue(sender_app, "left@example.org")  # left queued by a server that stopped
    read_end, write_end = os.pipe()
    thread = threading.Thread(
        target=run_sender,
        args=(sender_app, read_end),
        kwargs={"clock": later, "poll": 3600, "quiet": 0.001, "longest": 0.01},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not mailer.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent_to(mailer) == ["left@example.org"]  # the pass at start
        queue(sender_app, "a@example.org", "b@example.org")
        os.write(write_end, b"ww")
        while len(mailer.sent) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent_to(mailer) == ["a@example.org", "b@example.org", "left@example.org"]
        queue(sender_app, "c@example.org")
        os.write(write_end, b"w")  # then the server stops: what it woke for is still sent
    finally:
        os.close(write_end)
        thread.join(30)
    assert not thread.is_alive()
    os.close(read_end)
    assert sent_to(mailer) == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "left@example.org",
    ]
    assert statuses(sender_app) == {DeliveryStatus.SENT.value: 4}


def test_a_sender_that_starts_again_sends_nothing_twice(
    sender_app: App, mailer: RecordingMailer
) -> None:
    queue(sender_app, "a@example.org", "b@example.org")
    for _ in range(2):  # a sender started, stopped, started again: the ledger decides
        read_end, write_end = os.pipe()
        os.close(write_end)
        run_sender(sender_app, read_end, clock=later, poll=3600)
        os.close(read_end)
    assert sent_to(mailer) == ["a@example.org", "b@example.org"]


def test_a_failing_pass_leaves_the_rows_queued_and_the_sender_alive(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = App(settings)
    try:
        queue(application, "a@example.org")
        calls = []

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            raise RuntimeError("a bug in a pass")

        monkeypatch.setattr("newsletter.wakeups.deliver_confirmations", broken)
        read_end, write_end = os.pipe()
        os.write(write_end, b"w")
        os.close(write_end)
        run_sender(application, read_end, clock=later, poll=3600, quiet=0.001, longest=0.01)
        os.close(read_end)
        assert len(calls) == 2  # at start, and for the wake-up: the crash did not end it
        assert statuses(application) == {DeliveryStatus.QUEUED.value: 1}
    finally:
        application.close()


@pytest.mark.parametrize(
    ("writes", "close", "expected"),
    [
        pytest.param(0, False, True, id="quiet"),
        pytest.param(0, True, True, id="closed"),
        pytest.param(-1, False, False, id="wake-ups-keep-coming"),
    ],
)
def test_settle_says_whether_wake_ups_kept_coming(writes: int, close: bool, expected: bool) -> None:
    read_end, write_end = os.pipe()
    stop = threading.Event()

    def keep_waking() -> None:
        while not stop.is_set():
            os.write(write_end, b"w")
            time.sleep(0.002)

    writer = threading.Thread(target=keep_waking) if writes < 0 else None
    if writer is not None:
        writer.start()
    if close:
        os.close(write_end)
    try:
        # quiet: no wake-up for 0.05 s; keep coming: one every 2 ms for 0.3 s
        quiet = 0.05 if writes == 0 else 5.0
        assert settle(read_end, quiet=quiet, longest=0.3) is expected
    finally:
        stop.set()
        if writer is not None:
            writer.join()
        if not close:
            os.close(write_end)
        os.close(read_end)


def test_the_request_path_only_writes_and_wakes_the_sender(
    sender_app: App, mailer: RecordingMailer
) -> None:
    wakes = []
    web = create_web_app(sender_app, clock=lambda: NOW, wake_sender=lambda: wakes.append(1))
    with TestClient(web) as client:
        assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 202
        assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 202
        honeypot = {"email": "b@example.org", "website": "spam.example"}
        assert client.post("/subscribe", json=honeypot).status_code == 202
    assert wakes == [1]  # the second post is throttled; the honeypot writes nothing
    assert mailer.sent == []  # nothing built or sent in the web process
    assert statuses(sender_app) == {DeliveryStatus.QUEUED.value: 1}


def test_a_sender_that_is_gone_is_logged_once_and_the_request_still_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    process.wait()
    sender = BackgroundProcess(process)
    sender.wake()
    sender.wake()
    sender.close()
    sender.wake()  # after close: nothing to do
    gone = [r for r in caplog.records if "cannot be woken" in r.getMessage()]
    assert len(gone) == 1


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _wait(condition: Any, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_serve_sends_confirmations_from_its_background_process_which_ends_with_it(
    cli_env: dict[str, Any],
) -> None:
    """The web process has one child, which runs the scheduler's jobs too, sends the
    confirmations, and ends when the server stops (killed: the next test)."""
    env = {**os.environ, **cli_env, "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "1000/minute"}
    port = free_port()
    server = subprocess.Popen(
        [NEWSLETTER, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outbox = Path(cli_env["NEWSLETTER_OUTBOX_DIR"])
    try:
        assert _wait(lambda: _listening(port, server))
        child = _child(server)
        cmdline = Path(f"/proc/{child}/cmdline")
        # Just after the fork the child still shows serve's command line: wait for exec.
        assert _wait(lambda: b"newsletter.cli.background" in cmdline.read_bytes())
        command = cmdline.read_bytes().split(b"\0")
        assert b"newsletter.cli.background" in command
        assert b"--scheduler" in command
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for i in range(3):
                answer = client.post("/subscribe", json={"email": f"s{i}@example.org"})
                assert answer.status_code == 202
        assert _wait(lambda: len(list(outbox.glob("*.eml"))) == 3)
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        assert _wait(lambda: _gone(child))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert len(list(outbox.glob("*.eml"))) == 3
    app = App(load_settings(cli_env))
    try:
        assert statuses(app) == {DeliveryStatus.SENT.value: 3}
    finally:
        app.close()


def test_after_serve_is_killed_and_started_again_each_subscriber_gets_one_confirmation(
    cli_env: dict[str, Any],
) -> None:
    """Killed (SIGKILL) right after answering: what its background process had not sent
    yet is sent by the next ``serve``'s, once; nothing is sent twice."""
    env = {**os.environ, **cli_env, "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "1000/minute"}
    outbox = Path(cli_env["NEWSLETTER_OUTBOX_DIR"])
    emails = [f"k{i}@example.org" for i in range(10)]
    for run in range(2):
        port = free_port()
        server = subprocess.Popen(
            [NEWSLETTER, "serve", "--no-scheduler", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert _wait(functools.partial(_listening, port, server))
            child = _child(server)
            if run == 0:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    for email in emails:
                        assert client.post("/subscribe", json={"email": email}).status_code == 202
                server.send_signal(signal.SIGKILL)
            else:
                assert _wait(functools.partial(_sent, outbox, len(emails)))
                server.send_signal(signal.SIGTERM)
            server.wait(60)
            assert _wait(functools.partial(_gone, child))
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    recipients = sorted(str(m["To"]) for m in read_outbox(outbox))
    assert recipients == sorted(emails)
    app = App(load_settings(cli_env))
    try:
        assert statuses(app) == {DeliveryStatus.SENT.value: len(emails)}
    finally:
        app.close()


def _listening(port: int, server: subprocess.Popen[bytes]) -> bool:
    import socket

    assert server.poll() is None, "serve exited early"
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _child(server: subprocess.Popen[bytes]) -> int:
    """The one process ``server`` started (it starts it just after binding its port)."""
    assert _wait(lambda: len(_children(server.pid)) == 1)
    (child,) = _children(server.pid)
    return child


def _sent(outbox: Path, count: int) -> bool:
    return len(list(outbox.glob("*.eml"))) >= count


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
