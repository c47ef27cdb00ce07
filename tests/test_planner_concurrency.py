"""PostgreSQL: two planners and two delivery workers, four processes at once, over 10,000
due subscribers: exactly 10,000 emails, none twice, none missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from newsletter.app import App
from newsletter.models import Delivery, Enrollment
from newsletter.settings import Settings
from tests.conftest import NOW

SUBSCRIBERS = 10_000

SCRIPT = textwrap.dedent(
    '''
    """One planner or delivery worker: loops until nothing is left to plan or deliver."""
    import os, sys, time
    from datetime import datetime
    from sqlalchemy import text
    from newsletter.app import App
    from newsletter.delivery.base import SendResult, SendStatus
    from newsletter.drip.planner import plan_drips
    from newsletter.jobs import deliver
    from newsletter.settings import load_settings

    class RecordingMailer:
        """Appends one line per message handed over: pid and delivery id."""
        name = "recording"
        max_batch = 100
        def __init__(self, path):
            self.handle = open(path, "a", buffering=1)
        def send_batch(self, messages):
            for m in messages:
                self.handle.write(f"{os.getpid()} {m.delivery_id}\\n")
            self.handle.flush()
            return [SendResult(m.delivery_id, SendStatus.SENT, f"rec-{m.delivery_id}")
                    for m in messages]
        def close(self):
            self.handle.close()

    role, now_text, record = sys.argv[1], sys.argv[2], sys.argv[3]
    now = datetime.fromisoformat(now_text)
    app = App(load_settings(dict(os.environ)), mailer=RecordingMailer(record))
    LEFT = """SELECT
        (SELECT count(*) FROM enrollments WHERE status = 'active' AND next_due_at <= :now),
        (SELECT count(*) FROM deliveries WHERE status IN ('queued', 'leased', 'sending'))"""
    rounds = 0
    while True:
        rounds += 1
        result = plan_drips(app, now, batch_size=500) if role == "plan" else deliver(app, now)
        with app.engine.connect() as conn:
            due, in_flight = conn.execute(text(LEFT), {"now": now}).one()
        if due == 0 and (role == "plan" or in_flight == 0):
            break
        if role == "plan" and result["locked"]:
            time.sleep(0.01)
        if role == "deliver" and result["claimed"] == 0:
            time.sleep(0.02)
    print(role, rounds)
    app.close()
    '''
)


def seed(app: App, count: int) -> None:
    """``count`` active subscribers, each enrolled with the first step due (bulk SQL)."""
    with app.engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
                    attributes, created_at, updated_at, soft_bounces)
                SELECT 'pid' || n, 'reader' || n || '@example.org', 'Reader', 'Europe/Berlin',
                    'active', '[]', '{}', :now, :now, 0
                FROM generate_series(1, :count) AS n
                """
            ),
            {"now": NOW, "count": count},
        )
        conn.execute(
            text(
                """
                INSERT INTO enrollments (subscriber_id, sequence, status, position, next_due_at,
                    created_at)
                SELECT id, 'back-pain-basics', 'active', 0, :now, :now FROM subscribers
                """
            ),
            {"now": NOW},
        )


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_planners_and_two_workers_send_each_email_exactly_once(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    app = App(make_settings())
    seed(app, SUBSCRIBERS)
    script = tmp_path / "role.py"
    script.write_text(SCRIPT)
    env = {**cli_env, "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path.cwd())}
    records = [tmp_path / f"sent-{i}.txt" for i in range(4)]
    roles = ["plan", "deliver", "plan", "deliver"]
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), role, NOW.isoformat(), str(record)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, record in zip(roles, records, strict=True)
    ]
    for process in processes:
        _out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err

    handed = Counter(
        int(line.split()[1])
        for record in records
        if record.exists()
        for line in record.read_text().splitlines()
    )
    with app.sessions() as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
        per_enrollment = session.execute(
            select(Delivery.enrollment_id, func.count()).group_by(Delivery.enrollment_id)
        ).all()
        progress = Counter(
            session.execute(select(Enrollment.status, Enrollment.last_item_id)).all()
        )
        still_due = session.scalar(select(func.count()).where(Enrollment.next_due_at <= NOW))
    app.close()
    assert sum(handed.values()) == SUBSCRIBERS
    assert len(handed) == SUBSCRIBERS  # no delivery handed over twice
    assert statuses == {"sent": SUBSCRIBERS}
    assert len(per_enrollment) == SUBSCRIBERS
    assert {count for _, count in per_enrollment} == {1}
    assert progress == {("active", "system/welcome"): SUBSCRIBERS}
    assert still_due == 0
