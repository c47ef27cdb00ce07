"""The recurring jobs, by the names ``cron.yaml`` uses. Each takes the app and ``now``.

``newsletter tick`` runs every job once; ``serve`` and ``worker`` run them on their cron.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from newsletter.app import App
from newsletter.bounces.job import run_bounces
from newsletter.campaigns.planner import plan_campaigns
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.drip.planner import plan_drips
from newsletter.events.inbox import drain, prune
from newsletter.ledger import recover_expired_leases
from newsletter.sunset import sunset_job
from newsletter.webhooks.delivery import deliver_webhooks

log = logging.getLogger(__name__)

Job = Callable[[App, datetime], dict[str, Any]]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def deliver(app: App, now: datetime) -> dict[str, Any]:
    """Send every due delivery, batch after batch, until none is left due at ``now``.

    Stops early when the provider asked to wait (429/5xx with ``Retry-After``).
    """
    batches = sent = claimed = commits = 0
    outcomes: dict[str, int] = {}
    backoff: datetime | None = None
    # Every batch uses the run's logical ``now`` (so ``tick --now`` is exact); a run stops
    # after half a lease of real time so no batch is claimed with a stale ``now``: the next
    # run (scheduler: a minute later) carries on with a fresh one.
    budget = app.settings.lease_seconds / 2
    started = time.monotonic()
    while time.monotonic() - started < budget:
        report = deliver_due(app, now=now, worker=WORKER_ID)
        commits += report.commits
        backoff = report.backoff_until
        if report.claimed == 0:
            break
        batches += 1
        claimed += report.claimed
        for key, value in report.outcomes.items():
            outcomes[key] = outcomes.get(key, 0) + value
        sent = outcomes.get("sent", 0)
        if backoff is not None:  # the provider asked every worker to wait
            break
    result: dict[str, Any] = {
        "batches": batches,
        "claimed": claimed,
        "sent": sent,
        "outcomes": outcomes,
        "commits": commits,
    }
    if backoff is not None:
        result["backoff_until"] = backoff.isoformat()
    return result


def recover_leases(app: App, now: datetime) -> dict[str, Any]:
    """Expired leases: never handed over -> queued again; handed over -> ``unknown``."""
    with transaction(app.sessions) as session:
        requeued, unknown = recover_expired_leases(session, now=now)
    if unknown:
        log.warning("%d deliveries marked unknown after their lease expired mid-send", unknown)
    return {"requeued": requeued, "unknown": unknown}


def apply_events(app: App, now: datetime) -> dict[str, Any]:
    """Apply SendGrid event bodies still in the inbox (the web process applies each one
    right after answering; this catches up after a restart or with the web process busy),
    then delete old ones (``EVENT_INBOX_APPLIED_DAYS``, ``EVENT_INBOX_PROBLEM_DAYS``)."""
    report = drain(app, now=now)
    result: dict[str, Any] = {
        "bodies": report.bodies,
        "problems": report.problems,
        **report.counts,
    }
    pruned = prune(
        app,
        now=now,
        applied_days=app.settings.event_inbox_applied_days,
        problem_days=app.settings.event_inbox_problem_days,
    )
    if pruned.applied or pruned.problems:
        result["pruned"] = {"applied": pruned.applied, "problems": pruned.problems}
    return result


JOBS: dict[str, Job] = {
    "recover-leases": recover_leases,
    # Before planning and sending: a complaint or bounce waiting in the inbox suppresses
    # its address first, and reconciling settles ``unknown`` rows recovery just marked.
    "events": apply_events,
    "plan-drips": plan_drips,
    "plan-campaigns": plan_campaigns,
    "deliver": deliver,
    "webhooks": deliver_webhooks,
    "bounces": run_bounces,
    "sunset": sunset_job,
}
