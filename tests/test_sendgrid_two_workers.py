"""Two worker processes on PostgreSQL send 10,000 emails through the local SendGrid server:
each delivery id reaches the server exactly once, and the ledger agrees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import Delivery
from newsletter.settings import load_settings
from tests.conftest import NOW, base_environ
from tests.factories import add_subscribers, queue_deliveries

COUNT = 10_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sendgrid_process() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sendgrid_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("LISTENING "), line
    yield line.split(" ", 1)[1]
    process.terminate()
    process.wait(timeout=10)


def seed(app: App, count: int) -> None:
    with transaction(app.sessions) as session:
        subscriber_ids = add_subscribers(session, count, timezone="Europe/Berlin", prefix="reader")
        queue_deliveries(session, subscriber_ids, item_id="tips/meet-your-ql")


@pytest.mark.postgres
def test_two_workers_send_each_delivery_exactly_once(
    postgres_url: str, tmp_path: Path, sendgrid_process: str
) -> None:
    environ = base_environ(tmp_path, postgres_url)
    environ.update(
        NEWSLETTER_MAIL_BACKEND="sendgrid",
        NEWSLETTER_SENDGRID_API_KEY="SG.test-key",
        NEWSLETTER_SENDGRID_API_URL=sendgrid_process,
        NEWSLETTER_BATCH_SIZE="1000",
    )
    app = App(load_settings(environ))
    seed(app, COUNT)
    now = (NOW.replace(hour=12)).isoformat()
    env = {**os.environ, **environ}
    workers = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "newsletter"),
                "tick",
                "--job",
                "deliver",
                "--now",
                now,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    with urllib.request.urlopen(f"{sendgrid_process}/_recorded", timeout=10) as response:
        recorded = json.loads(response.read())
    counts = Counter(recorded["accepted_delivery_ids"])
    with app.sessions() as session:
        ids = {str(i) for i in session.scalars(select(Delivery.id))}
        by_status = dict(
            session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
    app.close()
    assert len(counts) == COUNT
    assert set(counts) == ids
    assert max(counts.values()) == 1
    assert recorded["invalid"] == 0
    assert by_status == {"sent": COUNT}
    claimed = [json.loads(out.strip().split(": ", 1)[1])["claimed"] for out, _ in outputs]
    assert sum(claimed) == COUNT
