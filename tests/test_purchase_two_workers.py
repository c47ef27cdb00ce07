"""PostgreSQL, two worker processes planning and delivering while the shop's API posts a
purchase on day 5: the next back-pain-basics step never goes out, first-week-with-your-tool
starts and names the product, and the same event id again changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from newsletter.app import App
from newsletter.models import Delivery, Enrollment, SubscriberEvent
from newsletter.settings import Settings
from tests.api_support import Clock, bearer, keys_and_client
from tests.conftest import NOW

PRODUCT = "QL Release Ball"

WORKER = textwrap.dedent(
    '''
    """A worker: plans and delivers as of the time in NOW_FILE until STOP_FILE exists."""
    import json, os, sys, time
    from datetime import datetime
    from pathlib import Path
    from newsletter.app import App
    from newsletter.delivery.base import SendResult, SendStatus
    from newsletter.drip.planner import plan_drips
    from newsletter.jobs import deliver
    from newsletter.settings import load_settings

    class RecordingMailer:
        name = "recording"
        max_batch = 100
        def __init__(self, path):
            self.handle = open(path, "a", buffering=1)
        def send_batch(self, messages):
            for m in messages:
                self.handle.write(json.dumps({"pid": os.getpid(), "id": m.delivery_id,
                    "subject": m.subject, "text": m.text}) + "\\n")
            self.handle.flush()
            return [SendResult(m.delivery_id, SendStatus.SENT, f"rec-{m.delivery_id}")
                    for m in messages]
        def close(self):
            self.handle.close()

    now_file, stop_file, record = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    app = App(load_settings(dict(os.environ)), mailer=RecordingMailer(record))
    while not stop_file.exists():
        now = datetime.fromisoformat(now_file.read_text().strip())
        plan_drips(app, now)
        deliver(app, now)
        time.sleep(0.05)
    app.close()
    '''
)


def wait_idle(app: App, now: datetime, timeout: float = 60) -> None:
    """Until nothing is due at ``now``: no due enrollment, nothing in flight, no final
    delivery waiting to be advanced."""
    deadline = time.monotonic() + timeout
    query = text(
        """SELECT
        (SELECT count(*) FROM enrollments WHERE status = 'active' AND next_due_at <= :now),
        (SELECT count(*) FROM deliveries WHERE status IN ('queued', 'leased', 'sending')
            AND due_at <= :now),
        (SELECT count(*) FROM enrollments e WHERE e.status = 'active'
            AND e.next_due_at IS NULL)"""
    )
    quiet = 0
    while time.monotonic() < deadline:
        with app.engine.connect() as conn:
            due, in_flight, waiting = conn.execute(query, {"now": now}).one()
        quiet = quiet + 1 if (due, in_flight, waiting) == (0, 0, 0) else 0
        if quiet >= 3:
            return
        time.sleep(0.1)
    raise AssertionError(f"workers did not settle at {now}: {due}, {in_flight}, {waiting}")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_purchase_flow_with_two_workers(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    app = App(make_settings())
    clock = Clock(NOW)
    client, write, _read = keys_and_client(app, clock)
    now_file, stop_file = tmp_path / "now.txt", tmp_path / "stop"
    now_file.write_text(NOW.isoformat())
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**cli_env, "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path.cwd())}
    records = [tmp_path / f"sent-{i}.jsonl" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(now_file), str(stop_file), str(record)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for record in records
    ]

    def at(days: float, hours: float = 0) -> datetime:
        moment = NOW + timedelta(days=days, hours=hours)
        clock.now = moment
        # Atomically (temp file + rename): a worker must never read a half-written clock.
        staged = now_file.with_suffix(".tmp")
        staged.write_text(moment.isoformat())
        staged.replace(now_file)
        return moment

    try:
        created = client.post(
            "/api/v1/subscribers",
            headers=bearer(write),
            json={
                "email": "buyer@example.org",
                "timezone": "UTC",
                "confirmed": True,
                "consent": {"source": "checkout"},
            },
        )
        assert created.status_code == 201, created.text
        wait_idle(app, at(0))
        wait_idle(app, at(2))
        # Day 5, 07:00 UTC: before the window opens at 08:00 the purchase arrives.
        wait_idle(app, at(4, 22))
        answer = client.post(
            "/api/v1/events",
            headers=bearer(write),
            json={
                "email": "buyer@example.org",
                "name": "purchase",
                "id": "order-1001",
                "properties": {"product": PRODUCT},
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["exited"] == ["back-pain-basics"]
        assert answer.json()["enrolled"] == ["first-week-with-your-tool"]
        for day in range(5, 16):
            wait_idle(app, at(day))
            if day == 6:
                again = client.post(
                    "/api/v1/events",
                    headers=bearer(write),
                    json={
                        "email": "buyer@example.org",
                        "name": "purchase",
                        "id": "order-1001",
                        "properties": {"product": PRODUCT},
                    },
                )
                assert again.status_code == 200
                assert again.json()["duplicate"] is True
    finally:
        stop_file.write_text("stop")
        for worker in workers:
            _out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err

    lines = [json.loads(line) for r in records if r.exists() for line in r.read_text().splitlines()]
    ids = [line["id"] for line in lines]
    assert len(ids) == len(set(ids))  # nothing handed over twice
    with app.sessions() as session:
        items = dict(
            session.execute(
                select(Delivery.id, Enrollment.sequence + " " + Delivery.item_id).join(
                    Enrollment, Enrollment.id == Delivery.enrollment_id
                )
            ).all()
        )
        events = session.scalar(select(func.count()).select_from(SubscriberEvent))
        enrollments = dict(session.execute(select(Enrollment.sequence, Enrollment.status)).all())
    app.close()
    sent = sorted((items[i] for i in ids), key=lambda x: x)
    assert sent == sorted(
        [
            "back-pain-basics system/welcome",
            "back-pain-basics tips/meet-your-ql",
            "first-week-with-your-tool system/purchase-welcome",
            "first-week-with-your-tool tutorials/first-session",
            "first-week-with-your-tool tutorials/at-your-desk",
            "first-week-with-your-tool tutorials/glute-routine",
            "first-week-with-your-tool tutorials/ql-release",
        ]
    )
    welcome = next(line for line in lines if "first week" in line["subject"])
    assert welcome["subject"] == f"Your {PRODUCT}: your first week"
    assert PRODUCT in welcome["text"]
    assert events == 1
    assert enrollments == {"back-pain-basics": "exited", "first-week-with-your-tool": "done"}
