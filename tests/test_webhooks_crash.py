"""SIGKILL of the process delivering webhooks, mid-batch, again and again: no event is
lost. Each restart comes after the endpoint lease expired and sends again what the killed
run had not recorded (at least once: the receiver deduplicates on ``id``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import WebhookDelivery, WebhookEvent
from newsletter.settings import Settings
from newsletter.webhooks.outbox import record_event
from newsletter.webhooks.service import add_webhook
from tests.conftest import NOW
from tests.webhook_receiver import Behaviour, Receiver

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
EVENTS = 60
KILLS = 3


def _tick(env: dict[str, str], offset: timedelta) -> subprocess.Popen[str]:
    args = [NEWSLETTER, "tick", "--job", "webhooks", "--now", (NOW + offset).isoformat()]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def test_sigkill_mid_batch_repeatedly_loses_no_event(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any]
) -> None:
    app = App(make_settings(webhook_allow_private="true"))
    receiver = Receiver(behaviour=Behaviour(delay=0.02)).start()
    try:
        add_webhook(app, receiver.url, ["subscriber.created"], now=NOW)
        with transaction(app.sessions) as session:
            for n in range(EVENTS):
                record_event(session, "subscriber.created", {"n": n}, now=NOW)
        with app.sessions() as session:
            ids = set(session.scalars(select(WebhookEvent.public_id)))
        env = {
            **cli_env,
            "PATH": os.environ.get("PATH", ""),
            "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE": "true",
            "NEWSLETTER_WEBHOOK_BATCH_SIZE": "1000",
        }
        for round_ in range(KILLS):
            offset = timedelta(minutes=3 * round_)  # past the 120 s endpoint lease
            before = len(receiver.received)
            worker = _tick(env, offset)
            _wait_for(lambda before=before: len(receiver.received) >= before + 8)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            assert worker.returncode == -signal.SIGKILL
        with app.sessions() as session:
            delivered = session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == "delivered")
            )
        assert delivered < EVENTS  # the kills came before the whole batch was recorded

        receiver.behaviour = Behaviour()
        finished = _tick(env, timedelta(minutes=3 * KILLS))
        out, err = finished.communicate(timeout=120)
        assert finished.returncode == 0, err
        assert f'"delivered": {EVENTS}' in out
        with app.sessions() as session:
            statuses = set(session.scalars(select(WebhookDelivery.status)))
        assert statuses == {"delivered"}
        assert set(receiver.ids()) == ids  # nothing lost; duplicates only from the kills
    finally:
        receiver.stop()
        app.close()
