"""APScheduler 3.x running the jobs named in ``cron.yaml`` (inside serve and worker).

Policy: each job is *coalesced* (a backlog of missed runs becomes one run), runs as *one
instance at a time* per process (a slow ``deliver`` is not started twice), and a run that
comes late (the process was busy or suspended) *runs late* - ``misfire_grace_time=None``
means no run is ever dropped for being late; a late start is logged. Across processes the
jobs are safe to overlap: the drip planner takes a PostgreSQL advisory lock, the campaign
planner locks campaign rows, and delivery claims rows with ``SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter.app import App
from newsletter.cronfile import load_cron_file
from newsletter.errors import NewsletterError
from newsletter.jobs import JOBS
from newsletter.logs import log_job

log = logging.getLogger(__name__)

JOB_DEFAULTS = {
    "coalesce": True,  # a backlog of missed runs collapses into one run
    "max_instances": 1,  # one instance of a job at a time in this process
    "misfire_grace_time": None,  # a late job runs late, however late, never silently skipped
}


def _run(app: App, name: str) -> None:
    """One scheduled run: a failure is logged with its traceback, the scheduler lives on."""
    now = datetime.now(UTC)
    started = time.monotonic()
    try:
        result = JOBS[name](app, now)
    except NewsletterError as exc:
        log.error("job %s failed: %s", name, exc, exc_info=True)
        return
    except Exception:  # a scheduled job must never kill the scheduler
        log.exception("job %s crashed; it runs again at its next time", name)
        return
    log_job(log, name, result, time.monotonic() - started)


def build_scheduler(app: App) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    for job in load_cron_file(app.settings.cron_file):
        if job.name not in JOBS:
            raise NewsletterError(
                f"{app.settings.cron_file}: job {job.name!r} has no implementation; "
                f"known jobs: {', '.join(JOBS)}"
            )
        scheduler.add_job(
            _run,
            CronTrigger.from_crontab(job.cron, timezone=UTC),
            args=(app, job.name),
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
