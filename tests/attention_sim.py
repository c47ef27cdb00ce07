"""A simulated 60 days for many subscribers in two sequences plus three campaigns.

Used by ``tests/test_attention_simulation.py`` in-process (SQLite) and as a script by two
worker processes at once (PostgreSQL): ``python -m tests.attention_sim WORKER_INDEX
BARRIER_DIR``. Each process runs every job at every tick with that tick's ``now``; a file
barrier keeps the two on the same tick, so they race on the same subscribers' slots.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from newsletter.app import App
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.planner import plan_campaigns
from newsletter.campaigns.sending import schedule_campaign
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.drip.planner import plan_drips
from newsletter.enrollment import new_enrollment
from newsletter.jobs import deliver
from newsletter.models import Campaign, Delivery, Enrollment, Subscriber
from newsletter.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # no DST change in the next 60 days
DAYS = 60
TICK = timedelta(hours=1)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")

BASICS = """name: basics
description: The main drip.
enroll: on_confirm
priority: normal
send_window: "08:00-11:00"
steps:
  - send: system/welcome
    after: 0d
  - send: tips/meet-your-ql
    after: 2d
  - send: tips/gentle-pressure
    after: 3d
  - send: tips/where-not-to-press
    after: 3d
  - send: tutorials/first-session
    after: 3d
  - send: testimonials/desk-worker
    after: 4d
  - send: tips/glutes-and-back-pain
    after: 4d
"""
TOOLS = """name: tools
description: "A dense tour of the tool, low priority, colliding with basics on purpose."
enroll: on_confirm
priority: low
send_window: "08:00-11:00"
steps:
  - send: tutorials/at-your-desk
    after: 1d
  - send: tutorials/glute-routine
    after: 1d
  - send: tips/desk-breaks
    after: 2d
  - send: tips/heat-or-ice
    after: 1d
  - send: tips/hip-flexors
    after: 2d
  - send: tips/piriformis
    after: 1d
"""
TOPICS = """topics:
  - name: tips
    description: The drip.
    sequences: [basics, tools]
  - name: offers
    description: Campaigns.
"""
# name, item, priority, when (ISO; a time without offset is local to each subscriber)
CAMPAIGNS = (
    ("reset", "campaigns/seven-day-reset", "normal", "2026-11-12T08:00:00+00:00"),
    ("launch", "campaigns/new-tool", "high", "2026-11-16 09:00"),
    ("sale", "campaigns/winter-sale", "low", "2026-12-01T09:00:00+00:00"),
)


class RecordingMailer:
    """Accepts every message; appends ``pid delivery_id`` lines to a file when given one."""

    name = "recording"
    max_batch = 100

    def __init__(self, path: Path | None = None) -> None:
        self.handle = path.open("a", buffering=1) if path else None

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        if self.handle is not None:
            for m in messages:
                self.handle.write(f"{os.getpid()} {m.delivery_id}\n")
        return [
            SendResult(m.delivery_id, SendStatus.SENT, f"rec-{m.delivery_id}") for m in messages
        ]

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def build_content(target: Path) -> Path:
    """The shipped library with two sequences (basics, tools) and three campaign items."""
    shutil.copytree(ROOT / "content", target)
    for old in (target / "sequences").glob("*.yaml"):
        old.unlink()
    (target / "sequences" / "basics.yaml").write_text(BASICS)
    (target / "sequences" / "tools.yaml").write_text(TOOLS)
    (target / "topics.yaml").write_text(TOPICS)
    reset = (target / "campaigns" / "seven-day-reset.md").read_text()
    (target / "campaigns" / "new-tool.md").write_text(reset)
    (target / "campaigns" / "winter-sale.md").write_text(reset)
    return target


def seed(app: App, count: int) -> None:
    """``count`` active subscribers in four zones, signing up over the first four days,
    each enrolled in both sequences; the three campaigns scheduled."""
    sequences = {s.name: s for s in app.library.sequences()}
    with transaction(app.sessions) as session:
        for n in range(count):
            signup = START + timedelta(hours=(n * 7) % 96, minutes=(n * 13) % 60)
            subscriber = Subscriber(
                public_id=f"sim{n:032d}"[-32:],
                email=f"sim{n:05d}@example.org",
                first_name=f"Sim{n}",
                timezone=ZONES[n % len(ZONES)],
                status="active",
                tags=[],
                attributes={},
                created_at=signup,
                updated_at=signup,
                confirmed_at=signup,
            )
            session.add(subscriber)
            session.flush()
            for sequence in sequences.values():
                session.add(new_enrollment(subscriber.id, sequence, now=signup))
    for name, item, priority, at in CAMPAIGNS:
        create_campaign(
            app,
            item,
            name=name,
            include=(),
            exclude=(),
            pause_drips=False,
            now=START,
            priority=priority,
        )
        schedule_campaign(app, name, at=at, timezone="UTC", local_time="+" not in at, now=START)


def ticks() -> list[datetime]:
    return [START + TICK * i for i in range(int(timedelta(days=DAYS) / TICK) + 1)]


def run(app: App, *, worker: int = 0, barrier: Path | None = None, peers: int = 1) -> None:
    """Every job at every tick; with ``barrier``, wait for the ``peers`` at each tick."""
    for index, now in enumerate(ticks()):
        plan_drips(app, now)
        plan_campaigns(app, now)
        deliver(app, now)
        if barrier is not None:
            (barrier / f"{index}-{worker}").touch()
            deadline = time.monotonic() + 120
            while not all((barrier / f"{index}-{k}").exists() for k in range(peers)):
                if (barrier / "failed").exists() or time.monotonic() > deadline:
                    raise SystemExit(f"worker {worker}: a peer failed or hung at tick {index}")
                time.sleep(0.002)
    # a last pass so both workers' final outcomes are recorded and campaigns finish
    plan_campaigns(app, ticks()[-1])


def facts(app: App) -> dict[str, Any]:
    """What the checks need: every marketing row, the enrollments, the campaigns."""
    with app.sessions() as session:
        rows = session.execute(
            select(
                Delivery.subscriber_id,
                Delivery.kind,
                Delivery.status,
                Delivery.sent_at,
                Delivery.enrollment_id,
                Delivery.campaign_id,
                Delivery.item_id,
                Delivery.due_at,
                Delivery.deferred_from,
                Delivery.error,
            ).where(Delivery.kind.in_(["drip", "campaign"]))
        ).all()
        enrollments = session.execute(
            select(Enrollment.id, Enrollment.sequence, Enrollment.status)
        ).all()
        campaigns = {
            c.name: (c.id, c.scheduled_at, c.local_time) for c in session.scalars(select(Campaign))
        }
        zones = dict(session.execute(select(Subscriber.id, Subscriber.timezone)).all())
    sent: dict[int, list[datetime]] = defaultdict(list)
    for r in rows:
        if r.status == "sent" and r.subscriber_id is not None:
            sent[r.subscriber_id].append(r.sent_at)
    return {
        "rows": rows,
        "enrollments": enrollments,
        "campaigns": campaigns,
        "sent": sent,
        "zones": zones,
    }


def main(argv: list[str]) -> None:
    worker, barrier, peers = int(argv[1]), Path(argv[2]), int(argv[3])
    settings = load_settings(dict(os.environ))
    app = App(settings, mailer=RecordingMailer(barrier / f"sent-{worker}.txt"))
    try:
        run(app, worker=worker, barrier=barrier, peers=peers)
    except BaseException:
        (barrier / "failed").touch()
        raise
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv)
