"""The ``webhooks`` job: deliver pending events, endpoint by endpoint, several at once.

``webhook_concurrency`` threads each claim one endpoint at a time (``queue``), send its
events in order over the shared keep-alive client, stop at the first failure, record the
batch and claim the next endpoint. A slow endpoint holds one thread for at most a batch
of bounded requests; the others keep going, and email delivery is another job.

A run uses one logical ``now`` (``tick --now`` is exact) and stops claiming after half
a lease of real time; signatures carry the real time (receivers compare it with theirs).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from newsletter.app import App
from newsletter.db import transaction
from newsletter.webhooks.queue import Attempt, Claim, claim_endpoint, record_attempts
from newsletter.webhooks.sender import WebhookSender, pin_or_error
from newsletter.webhooks.signing import signature_header

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WebhookReport:
    endpoints: int = 0  # claims
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def deliver_webhooks(
    app: App,
    now: datetime,
    *,
    uniform: Callable[[float, float], float] = random.uniform,
    worker: str = WORKER_ID,
    sender: WebhookSender | None = None,
) -> dict[str, Any]:
    """One run of the job (see the module docstring); returns counts for the log line."""
    settings = app.settings
    post = sender or app.webhook_sender
    report = WebhookReport()
    lock = threading.Lock()
    budget = settings.webhook_lease_seconds / 2
    started = time.monotonic()
    lease = timedelta(seconds=settings.webhook_lease_seconds)

    def claim_next(thread_worker: str) -> Claim | None:
        if time.monotonic() - started >= budget:
            return None
        with transaction(app.sessions) as session:
            return claim_endpoint(
                session,
                worker=thread_worker,
                now=now,
                lease=lease,
                limit=settings.webhook_batch_size,
            )

    def serve(claim: Claim | None, thread_worker: str) -> None:
        while claim is not None:
            # Stop in time to record the batch before the endpoint lease could expire.
            margin = settings.webhook_lease_seconds - 2 * settings.webhook_timeout_seconds
            deadline = min(started + budget, time.monotonic() + max(margin, 0))
            attempts = send_claim(app, post, claim, deadline=deadline)
            with transaction(app.sessions) as session:
                outcome = record_attempts(
                    session, claim, attempts, worker=thread_worker, now=now, uniform=uniform
                )
            with lock:
                report.endpoints += 1
                report.delivered += outcome.delivered
                report.retrying += outcome.retrying
                report.failed += outcome.failed
                report.disabled += int(outcome.disabled)
            claim = claim_next(thread_worker)

    def serve_fresh() -> None:
        thread_worker = f"{worker}:{threading.get_ident()}"
        serve(claim_next(thread_worker), thread_worker)

    # The first claim is made here: an idle run (nothing pending) starts no thread.
    first_worker = f"{worker}:{threading.get_ident()}"
    first = claim_next(first_worker)
    if first is None:
        return report.as_dict()
    threads = settings.webhook_concurrency
    with ThreadPoolExecutor(threads, thread_name_prefix="webhooks") as pool:
        futures = [pool.submit(serve, first, first_worker)]
        futures += [pool.submit(serve_fresh) for _ in range(threads - 1)]
        for future in futures:
            future.result()
    return report.as_dict()


def send_claim(app: App, sender: WebhookSender, claim: Claim, *, deadline: float) -> list[Attempt]:
    """Send the claim's events in order; stop at the first failure or the deadline."""
    pinned = pin_or_error(sender, claim.url)  # DNS checked again now: rebinding is refused
    attempts: list[Attempt] = []
    for outgoing in claim.outgoing:
        if isinstance(pinned, str):
            attempts.append(Attempt(outgoing.delivery_id, False, None, pinned))
            break
        body = outgoing.body.encode()
        stamp = int(app.clock().timestamp())
        result = sender.post(pinned, body, signature_header(claim.secrets, stamp, body))
        attempts.append(Attempt(outgoing.delivery_id, result.ok, result.status_code, result.error))
        if not result.ok or time.monotonic() > deadline:
            break
    return attempts
