"""APScheduler 3.x running the jobs named in ``cron.yaml`` (inside serve and worker).

Policy: each job is *coalesced* (a backlog of missed runs becomes one run), runs as *one
instance at a time* per process (a slow ``deliver`` is not started twice), and a run that
comes late (the process was busy or suspended) *runs late* - ``misfire_grace_time=None``
means no run is ever dropped for being late; a late start is logged. Across processes the
jobs are safe to overlap: the drip planner takes a PostgreSQL advisory lock, the campaign
planner locks campaign rows, and delivery claims rows with ``SKIP LOCKED``.

Drip lag: the jobs do not wait for each other's next minute. A planner run that wrote
ledger rows starts ``deliver`` right after its commit (or, if ``deliver`` is running, makes
it run once more when it ends), and the drip planner is woken at the earliest
``next_due_at`` when that comes before its next cron time (no sooner than ``MIN_WAKE``
after its last run). So a step due at T goes out shortly after T, not one or two polls
later.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.cron import CronTrigger

from newsletter.app import App
from newsletter.cronfile import load_cron_file
from newsletter.db import transaction
from newsletter.drip.planner import earliest_due
from newsletter.errors import NewsletterError
from newsletter.jobs import JOBS
from newsletter.logs import log_job

log = logging.getLogger(__name__)

JOB_DEFAULTS = {
    "coalesce": True,  # a backlog of missed runs collapses into one run
    "max_instances": 1,  # one instance of a job at a time in this process
    "misfire_grace_time": None,  # a late job runs late, however late, never silently skipped
}


# The drip planner is woken for the next due step no sooner than this after a run.
MIN_WAKE = timedelta(seconds=1)
PLANNERS = ("plan-drips", "plan-campaigns")


def _run(app: App, name: str, chain: _Chain | None = None) -> None:
    """One scheduled run: a failure is logged with its traceback, the scheduler lives on."""
    while True:
        result = _run_once(app, name)
        if chain is None or not chain.after(name, result):
            return


def _run_once(app: App, name: str) -> dict[str, Any] | None:
    now = datetime.now(UTC)
    started = time.monotonic()
    try:
        result = JOBS[name](app, now)
    except NewsletterError as exc:
        log.error("job %s failed: %s", name, exc, exc_info=True)
        return None
    except Exception:  # a scheduled job must never kill the scheduler
        log.exception("job %s crashed; it runs again at its next time", name)
        return None
    log_job(log, name, result, time.monotonic() - started)
    return result


class _Chain:
    """Starts ``deliver`` once a planner committed rows; wakes the drip planner for the
    next due step. Thread-safe: scheduled jobs run in the scheduler's pool."""

    def __init__(self, app: App, scheduler: BackgroundScheduler) -> None:
        self.app = app
        self.scheduler = scheduler
        self.lock = threading.Lock()
        self.delivering = False  # a ``deliver`` run is under way in this process
        self.again = False  # ... and rows were planned since it started

    def before_deliver(self) -> None:
        with self.lock:
            self.delivering, self.again = True, False

    def after(self, name: str, result: dict[str, Any] | None) -> bool:
        """Called when a run of ``name`` ended; True: run it again at once."""
        if name == "deliver":
            with self.lock:
                again, self.again = self.again, False
                self.delivering = again
            return again
        if name in PLANNERS and result and result.get("planned"):
            self.kick_deliver()
        if name == "plan-drips":
            self.wake_planner()
        return False

    def kick_deliver(self) -> None:
        with self.lock:
            if self.delivering:
                self.again = True
                return
        self._move("deliver", datetime.now(UTC))

    def wake_planner(self) -> None:
        now = datetime.now(UTC)
        try:
            with transaction(self.app.sessions) as session:
                due = earliest_due(session, after=now)
        except Exception:  # the wake-up is an optimisation: the cron run still comes
            log.exception("could not read the next drip due time")
            return
        if due is not None:
            self._move("plan-drips", max(due, now + MIN_WAKE))

    def _move(self, job_id: str, at: datetime) -> None:
        """Run ``job_id`` at ``at`` if that is sooner than its next scheduled run.

        Done from a short daemon thread: ``shutdown(wait=True)`` holds the scheduler's job
        store lock while it waits for running jobs, so a job thread that touched the
        scheduler itself could wait for a lock held by a shutdown waiting for it.
        """
        if self.scheduler.state != STATE_RUNNING:
            return
        threading.Thread(target=self._reschedule, args=(job_id, at), daemon=True).start()

    def _reschedule(self, job_id: str, at: datetime) -> None:
        try:
            job = self.scheduler.get_job(job_id)
            if job is None or job.next_run_time is None:
                return  # not scheduled here, or paused
            if at < job.next_run_time:
                job.modify(next_run_time=at)
        except (SchedulerNotRunningError, JobLookupError):
            return  # shut down meanwhile: nothing to move


def _deliver(app: App, name: str, chain: _Chain) -> None:
    chain.before_deliver()
    _run(app, name, chain)


def build_scheduler(app: App) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    chain = _Chain(app, scheduler)
    for job in load_cron_file(app.settings.cron_file):
        if job.name not in JOBS:
            raise NewsletterError(
                f"{app.settings.cron_file}: job {job.name!r} has no implementation; "
                f"known jobs: {', '.join(JOBS)}"
            )
        scheduler.add_job(
            _deliver if job.name == "deliver" else _run,
            CronTrigger.from_crontab(job.cron, timezone=UTC),
            args=(app, job.name, chain),
            id=job.name,
            name=job.name,
            replace_existing=True,
        )

    def _report(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run at %s", event.job_id, event.scheduled_run_time)
        elif event.exception is not None:
            log.error("job %s raised %r", event.job_id, event.exception)

    scheduler.add_listener(_report, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def start_scheduler(app: App) -> BackgroundScheduler:
    scheduler = build_scheduler(app)
    scheduler.start()
    log.info("scheduler started with jobs: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    return scheduler


def run_worker(app: App) -> None:
    """Run the scheduler until SIGINT/SIGTERM."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheduler = start_scheduler(app)
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
