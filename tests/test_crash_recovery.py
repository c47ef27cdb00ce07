"""A worker killed with SIGKILL in the middle of a batch, then restarted after its lease
expired: nothing is lost, nothing is sent twice, and the one message in flight at the kill
is marked ``unknown`` instead of being resent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.test_smtp_mailer import NOW, FaultyHandler, SMTPServer, add_subscribers, start_server

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
MESSAGES = 12


@pytest.fixture
def slow_server() -> Iterator[SMTPServer]:
    server = start_server(FaultyHandler(delay=0.3))  # each message takes 0.3 s to accept
    yield server
    server.controller.stop()


def tick(env: dict[str, str], now_offset: timedelta, *jobs: str) -> subprocess.Popen[str]:
    args = [NEWSLETTER, "tick", "--now", (NOW + now_offset).isoformat()]
    for job in jobs:
        args += ["--job", job]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def test_sigkill_mid_batch_loses_nothing_and_resends_nothing(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], slow_server: SMTPServer
) -> None:
    settings = make_settings(mail_backend="smtp", smtp_url=slow_server.url)
    app = App(settings)
    ids = set(add_subscribers(app, [f"reader{i}" for i in range(MESSAGES)]).values())
    env = {
        **cli_env,
        "PATH": os.environ.get("PATH", ""),
        "NEWSLETTER_MAIL_BACKEND": "smtp",
        "NEWSLETTER_SMTP_URL": slow_server.url,
    }
    handler = slow_server.handler

    worker = tick(env, timedelta(0), "deliver")
    wait_for(lambda: len(handler.delivery_ids()) >= 4)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the server finishes the message it was reading when the client died
    at_kill = Counter(handler.delivery_ids())
    with app.sessions() as session:
        states = Counter(session.scalars(select(Delivery.status)))
    assert states["sending"] == 1  # exactly the message in flight
    assert states["sent"] >= 3
    assert states["sent"] + states["sending"] + states["leased"] == MESSAGES

    handler.delay = 0.0
    restarted = tick(env, timedelta(minutes=10))  # after the 5-minute lease expired
    out, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err
    assert "recover-leases: " in out
    assert '"unknown": 1' in out

    with app.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(Delivery))}
    app.close()
    received = Counter(handler.delivery_ids())
    unknown = [i for i, d in rows.items() if d.status == "unknown"]
    sent = {i for i, d in rows.items() if d.status == "sent"}
    assert len(unknown) == 1
    assert sent | set(unknown) == ids  # nothing lost: every row sent, or its fate recorded
    assert all(count == 1 for count in received.values()), received  # no duplicate
    assert set(received) - set(unknown) == sent  # every sent row reached the server once
    assert received[unknown[0]] == at_kill[unknown[0]]  # the unknown one was not resent
    assert "lease expired" in (rows[unknown[0]].error or "")
