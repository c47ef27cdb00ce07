"""The APScheduler wiring: every cron.yaml job, coalesced, one at a time, late runs kept;
a failing job is logged and the scheduler keeps running."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger

from newsletter import scheduling
from newsletter.app import App
from newsletter.errors import NewsletterError
from newsletter.jobs import JOBS
from newsletter.settings import Settings, load_settings
from tests.conftest import base_environ


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str) -> App:
    return App(load_settings(base_environ(tmp_path, sqlite_url)))


def test_tick_runs_the_jobs_in_order() -> None:
    assert list(JOBS) == [
        "recover-leases",
        "events",
        "plan-drips",
        "plan-campaigns",
        "deliver",
        "webhooks",
        "bounces",
        "sunset",
    ]


def test_every_cron_job_is_scheduled_coalesced_one_at_a_time_never_dropped(app: App) -> None:
    scheduler = scheduling.build_scheduler(app)
    scheduler.start(paused=True)  # job defaults are applied when a job is really added
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown(wait=False)
    assert set(jobs) == set(JOBS)
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time is None
        assert isinstance(job.trigger, CronTrigger)
    assert str(jobs["recover-leases"].trigger) == str(
        CronTrigger.from_crontab("*/5 * * * *", timezone=UTC)
    )


def test_a_cron_file_naming_an_unknown_job_stops_start_up(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy without the job: deleting from JOBS itself would re-add it at the end (order
    # matters to `tick`) when monkeypatch restores it.
    without = {name: job for name, job in JOBS.items() if name != "plan-drips"}
    monkeypatch.setattr(scheduling, "JOBS", without)
    settings: Settings = load_settings(base_environ(tmp_path, sqlite_url))
    with pytest.raises(NewsletterError, match="job 'plan-drips' has no implementation"):
        scheduling.build_scheduler(App(settings))


def test_a_failing_job_is_logged_and_the_scheduler_keeps_running(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    done = threading.Event()

    def broken(_app: App, now: datetime) -> dict[str, Any]:
        calls.append("broken")
        raise RuntimeError("database went away")

    def healthy(_app: App, now: datetime) -> dict[str, Any]:
        assert now.tzinfo is not None
        calls.append("healthy")
        done.set()
        return {"ok": 1}

    for name in JOBS:
        monkeypatch.setitem(JOBS, name, healthy if name == "deliver" else broken)
    scheduler = scheduling.build_scheduler(app)
    scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        scheduler.modify_job("plan-drips", next_run_time=now)
        scheduler.modify_job("deliver", next_run_time=now)
        scheduler.resume()
        assert done.wait(10)
    finally:
        scheduler.shutdown(wait=True)
    assert "healthy" in calls
    assert "broken" in calls
    assert "job plan-drips crashed" in caplog.text
