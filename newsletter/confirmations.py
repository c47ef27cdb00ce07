"""Sending confirmation emails off the request path.

A subscribe request commits the subscriber, its consent record and a queued confirmation
row, and is answered; building and handing over the email is done here, in batches:

* ``deliver_confirmations`` sends every confirmation that is due, one claim after the
  other, until none is left;
* ``settle`` paces the loop of the process ``newsletter serve`` starts beside uvicorn
  (``newsletter.wakeups.WakeLoop``, run by ``newsletter.cli.background``), so the
  email's rendering, MIME building and provider call never compete with requests for the
  web process's interpreter. That loop is woken by a byte on a pipe, written by the web
  process after each commit that queued a confirmation; a burst's wake-ups are read at
  once and fold into one pass. It also makes a pass at start (rows a stopped process left
  queued) and every ``POLL_SECONDS``, and returns when the pipe is closed (the web process
  stopped or died) after serving what was written. Before a pass and between its claims
  it defers to the web process while wake-ups keep coming (until none came for
  ``QUIET_SECONDS``, at most ``YIELD_SECONDS``), and claims ``BUSY_BATCH`` rows instead of
  ``BATCH`` when they still came: a claim holds SQLite's single writer while it builds its
  emails, and another process's commit waiting for it sleeps in SQLite's busy handler, so
  small claims are made in the gaps between requests.

Whatever happens here the rows stay in the ledger: the scheduler's ``deliver`` sends any
confirmation this did not, and the claim (a lease per row) makes each go out once.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from newsletter.app import App
from newsletter.dispatch import deliver_due
from newsletter.errors import NewsletterError
from newsletter.ledger import worker_name
from newsletter.models import DeliveryKind

log = logging.getLogger(__name__)

BATCH = 32  # confirmations per claim while no request is being answered ...
BUSY_BATCH = 4  # ... and while they are (each claim and chunk takes SQLite's writer)
POLL_SECONDS = 30.0  # a pass at least this often, woken or not
QUIET_SECONDS = 0.01  # a claim waits until no wake-up came for this long ...
YIELD_SECONDS = 0.25  # ... but never longer than this
ROLE = "confirmations"  # ``leased_by`` of rows this sends: ``worker_name(ROLE)``
_READ = 65536  # wake-up bytes read at once


def deliver_confirmations(
    app: App,
    *,
    clock: Callable[[], datetime],
    batch: Callable[[], int] | int = BATCH,
    pause: Callable[[], None] = lambda: None,
    worker: str | None = None,
) -> int:
    """Send every confirmation that is due, ``batch`` per claim, calling ``pause()``
    between claims; returns how many were claimed. A database or sending error is logged
    and ends the pass (the rows stay queued for the next pass or the scheduler)."""
    total = 0
    worker = worker or worker_name(ROLE)
    try:
        claimed = 1
        while claimed:  # until no confirmation is left due
            limit = batch() if callable(batch) else batch
            report = deliver_due(
                app, now=clock(), worker=worker, kinds=[DeliveryKind.CONFIRMATION], limit=limit
            )
            claimed = report.claimed
            total += claimed
            if claimed:
                pause()
    except (NewsletterError, SQLAlchemyError):
        log.exception("confirmation delivery failed; the scheduler will retry")
    return total


def settle(wake: int, *, quiet: float, longest: float) -> bool:
    """Read wake-ups until none came for ``quiet`` seconds (True), or ``longest`` seconds
    passed (False: they keep coming), or the pipe is closed (True)."""
    deadline = time.monotonic() + longest
    while (left := deadline - time.monotonic()) > 0:
        wait = min(quiet, left)
        ready, _, _ = select.select([wake], [], [], wait)
        if not ready:
            return wait == quiet  # else the deadline came before a quiet spell
        if not os.read(wake, _READ):
            return True
    return False
