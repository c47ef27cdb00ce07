"""Drip lag with the real scheduler running (``build_scheduler``, as ``serve`` and
``worker`` run it) at a short poll interval: steps due at staggered instants go out
within one poll interval of their due time (measured, p99 and max), none missed; and a
planner run that commits rows while ``deliver`` runs makes ``deliver`` go once more."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from newsletter import scheduling
from newsletter.app import App
from newsletter.db import transaction
from newsletter.jobs import JOBS
from newsletter.models import Delivery, Enrollment, Subscriber
from newsletter.settings import Settings
from tests.mailers import HandOverClock

POLL = 3.0  # seconds: every job cron.yaml runs each minute runs this often instead
EVERY_MINUTE = ("plan-drips", "plan-campaigns", "deliver", "webhooks")


def enroll(app: App, count: int, start: datetime, spread: float) -> dict[int, datetime]:
    """``count`` subscribers whose welcome step falls due between start and start+spread."""
    rng = random.Random(19)
    due: dict[int, datetime] = {}
    with transaction(app.sessions) as session:
        for n in range(count):
            subscriber = Subscriber(
                public_id=f"lag{n}",
                email=f"lag{n}@example.org",
                timezone="Europe/Berlin",
                status="active",
                tags=[],
                attributes={},
                created_at=start,
                updated_at=start,
            )
            session.add(subscriber)
            session.flush()
            at = start + timedelta(seconds=rng.uniform(0, spread))
            enrollment = Enrollment(
                subscriber_id=subscriber.id,
                sequence="back-pain-basics",
                status="active",
                position=0,
                next_due_at=at,
                created_at=start,
            )
            session.add(enrollment)
            session.flush()
            due[enrollment.id] = at
    return due


def test_steps_go_out_within_one_poll_interval_of_their_due_time(
    make_settings: Callable[..., Settings],
) -> None:
    mailer = HandOverClock()
    app = App(make_settings(), mailer=mailer)
    app.library  # noqa: B018 - load content before the clock starts
    scheduler = scheduling.build_scheduler(app)
    start = datetime.now(UTC) + timedelta(seconds=POLL)
    due = enroll(app, 20, start, 4 * POLL)
    first = datetime.now(UTC) + timedelta(seconds=POLL / 2)
    for name in EVERY_MINUTE:
        scheduler.reschedule_job(name, trigger=IntervalTrigger(seconds=POLL, start_date=first))
    scheduler.start()
    try:
        deadline = time.monotonic() + 8 * POLL + 30
        while time.monotonic() < deadline:
            with mailer.lock:
                if len(mailer.sent) >= len(due):
                    break
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    with app.sessions() as session:
        enrollment_of = dict(session.execute(select(Delivery.id, Delivery.enrollment_id)).all())
    app.close()
    lags = sorted((at - due[enrollment_of[d]]).total_seconds() for d, at in mailer.sent.items())
    assert len(lags) == len(due)  # none missed, none sent twice
    assert lags[0] >= 0  # never before its due time
    p99 = lags[int(0.99 * (len(lags) - 1))]
    assert p99 <= POLL, f"p99 lag {p99:.2f} s > poll {POLL} s; lags {lags}"


def test_rows_planned_while_deliver_runs_make_it_run_once_more(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No run waits for the next poll: deliver started before the planner committed is
    followed by another deliver run as soon as it ends."""
    app = App(make_settings())
    runs: list[str] = []
    delivering = threading.Event()
    planned = threading.Event()
    second = threading.Event()

    def deliver(_app: App, now: datetime) -> dict[str, Any]:
        runs.append("deliver")
        if len(runs) == 1:
            delivering.set()
            assert planned.wait(10)  # the planner commits while this run is under way
        else:
            second.set()
        return {"sent": 0}

    def plan(_app: App, now: datetime) -> dict[str, Any]:
        assert delivering.wait(10)
        runs.append("plan-drips")
        return {"planned": 1}

    def idle(_app: App, now: datetime) -> dict[str, Any]:
        return {}

    for name in JOBS:
        monkeypatch.setitem(JOBS, name, {"deliver": deliver, "plan-drips": plan}.get(name, idle))
    original_after = scheduling._Chain.after

    def after(self: scheduling._Chain, name: str, result: dict[str, Any] | None) -> bool:
        again = original_after(self, name, result)
        if name == "plan-drips":
            planned.set()
        return again

    monkeypatch.setattr(scheduling._Chain, "after", after)
    scheduler = scheduling.build_scheduler(app)
    for name in JOBS:  # no cron run comes within the test: a second run is the chain's
        scheduler.reschedule_job(name, trigger=IntervalTrigger(hours=1))
    scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        scheduler.modify_job("deliver", next_run_time=now)
        scheduler.modify_job("plan-drips", next_run_time=now)
        scheduler.resume()
        assert second.wait(10)
    finally:
        scheduler.shutdown(wait=True)
        app.close()
    assert runs[:3] == ["deliver", "plan-drips", "deliver"]


def test_shutdown_while_a_planner_run_ends_does_not_hang(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shutdown(wait=True)`` waits for running jobs while holding the scheduler's locks:
    a planner run that ends then (and kicks deliver, wakes itself) must not wait on them."""
    app = App(make_settings())
    running = threading.Event()
    release = threading.Event()

    def plan(_app: App, now: datetime) -> dict[str, Any]:
        running.set()
        assert release.wait(10)
        return {"planned": 3}

    def idle(_app: App, now: datetime) -> dict[str, Any]:
        return {}

    for name in JOBS:
        monkeypatch.setitem(JOBS, name, plan if name == "plan-drips" else idle)
    scheduler = scheduling.build_scheduler(app)
    for name in JOBS:
        scheduler.reschedule_job(name, trigger=IntervalTrigger(hours=1))
    scheduler.start(paused=True)
    scheduler.modify_job("plan-drips", next_run_time=datetime.now(UTC))
    scheduler.resume()
    assert running.wait(10)
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True})
    stopper.start()
    time.sleep(0.2)  # shutdown is now waiting for the planner run, holding its locks
    release.set()
    stopper.join(10)
    app.close()
    assert not stopper.is_alive(), "shutdown hung on a job that touched the scheduler"
