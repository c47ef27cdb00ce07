"""The background process's loop: wake-ups on a pipe, routed by their byte.

The web process of ``newsletter serve`` writes one byte on the pipe after each commit that
left work for its background process (``newsletter.cli.background``):

* ``CONFIRMATIONS`` (``b"w"``): a confirmation was queued; a pass sends every one that is
  due (``newsletter.confirmations.deliver_confirmations``);
* ``EVENTS`` (``b"e"``): a SendGrid webhook body was committed to the event inbox; a pass
  drains it (``newsletter.events.inbox.drain``), so parsing and applying events never
  compete with webhook requests for the web process's interpreter.

Bytes read at once fold into one pass of each kind they name. Each kind also gets a pass at
start (work a stopped process left) and every ``poll`` seconds. The loop returns when the
pipe is closed (the web process stopped or died), after sending the confirmations it was
woken for; a drain under way then stops after its current transaction, and none starts
(the bodies stay pending for the next process's first pass or the worker's ``events``
job: a drain's backlog must not hold up the server's stop).

Both passes defer to the web process while it answers requests (on SQLite a pass's
transaction holds the single writer they wait for, and SQLite's busy handler lets a
process that keeps writing take it again and again). A confirmation pass pauses between
claims with ``confirmations.settle``: until no wake-up came for ``quiet`` seconds, at
most ``longest``, with small claims while they kept coming. A drain pauses before each body
while webhook requests are being answered, at most ``drain_yield``: the web process
writes ``WEBHOOKS_BUSY`` when it starts answering one with none in flight and
``WEBHOOKS_IDLE`` when the last one is answered -- the in-flight count its own drain
thread deferred to. (Deferring only while wake-ups came, as confirmations do, was
measured: a request waiting for the writer writes nothing, and acceptance on SQLite fell
from 186-235 to 8-9 requests/s, p99 3-12 s.) A confirmation woken during a drain is sent
between two bodies: an event backlog never holds up a confirmation email.
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
from newsletter.confirmations import (
    BATCH,
    BUSY_BATCH,
    POLL_SECONDS,
    QUIET_SECONDS,
    YIELD_SECONDS,
    deliver_confirmations,
)
from newsletter.errors import NewsletterError
from newsletter.events.inbox import drain

log = logging.getLogger(__name__)

CONFIRMATIONS = b"w"
EVENTS = b"e"
WEBHOOKS_BUSY = b"b"  # webhook requests started being answered ...
WEBHOOKS_IDLE = b"i"  # ... none is any more
# The drain defers at most this long before each body while webhook posts keep coming:
# under an endless flood it still applies about one body (1,000 events) a second, and the
# worker's ``events`` job drains the rest. The web process's own drain uses the same.
DRAIN_YIELD_SECONDS = 1.0
_READ = 65536  # wake-up bytes read at once


class WakeLoop:
    """One background process's loop over its pipe (``run``)."""

    def __init__(
        self,
        app: App,
        wake: int,
        *,
        clock: Callable[[], datetime],
        events: bool = True,
        poll: float = POLL_SECONDS,
        batch: int = BATCH,
        busy_batch: int = BUSY_BATCH,
        quiet: float = QUIET_SECONDS,
        longest: float = YIELD_SECONDS,
        drain_yield: float = DRAIN_YIELD_SECONDS,
    ) -> None:
        self._app = app
        self._wake = wake
        self._clock = clock
        self._kinds = {CONFIRMATIONS, EVENTS} if events else {CONFIRMATIONS}
        self._poll = poll
        self._batch = batch
        self._busy_batch = busy_batch
        self._quiet = quiet
        self._longest = longest
        self._drain_yield = drain_yield
        self.due: set[bytes] = set()  # kinds woken for and not served yet
        self.closed = False  # the pipe reached its end
        self._busy = False  # wake-ups were still coming when the last pause ended
        self.web_busy = False  # the web process is answering webhook requests
        self._sending = False  # a confirmation pass is under way

    def run(self) -> None:
        """Serve every kind at once, then each wake-up, until the pipe is closed."""
        self.due |= self._kinds
        while True:
            self._serve()
            if self.closed:
                return
            ready, _, _ = select.select([self._wake], [], [], self._poll)
            if not ready:
                self.due |= self._kinds  # the periodic pass
                continue
            self._read()
            if not self.closed:
                self._busy = not self._settle(self._longest)

    def _serve(self) -> None:
        while self.due & self._kinds:
            if CONFIRMATIONS in self.due:
                self._confirmations()
            if EVENTS in self.due & self._kinds:
                if self.closed:  # shutting down: left pending for the next process
                    self.due.discard(EVENTS)
                else:
                    self._events()

    def _confirmations(self) -> None:
        self.due.discard(CONFIRMATIONS)
        self._sending = True
        try:
            deliver_confirmations(
                self._app, clock=self._clock, batch=self._size, pause=self._confirmation_pause
            )
        except Exception:  # the loop must live on: the rows stay queued
            log.exception("confirmation pass crashed; the next wake-up tries again")
        finally:
            self._sending = False

    def _events(self) -> None:
        self.due.discard(EVENTS)
        try:
            drain(
                self._app,
                now=self._clock(),
                pause=self._drain_pause,
                busy=lambda: self._busy,
                stop=lambda: self.closed,
            )
        except (NewsletterError, SQLAlchemyError):
            # The bodies stay pending for the next wake-up or the worker's ``events`` job.
            log.exception("sendgrid event inbox: drain failed; the events job retries")

    def _size(self) -> int:
        return self._busy_batch if self._busy else self._batch

    def _confirmation_pause(self) -> None:
        self._busy = not self._settle(self._longest)

    def _drain_pause(self) -> None:
        ready, _, _ = select.select([self._wake], [], [], 0)
        if ready:
            self._read()
        deadline = time.monotonic() + self._drain_yield
        while self.web_busy and not self.closed and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._wake], [], [], left)
            if ready:
                self._read()
        self._busy = self.web_busy
        if CONFIRMATIONS in self.due and not self._sending:
            self._confirmations()  # between two bodies, not after the whole backlog

    def _read(self) -> None:
        data = os.read(self._wake, _READ)
        if not data:
            self.closed = True
            return
        for kind in (CONFIRMATIONS, EVENTS):
            if kind in data:
                self.due.add(kind)
        busy, idle = data.rfind(WEBHOOKS_BUSY), data.rfind(WEBHOOKS_IDLE)
        if busy != idle:  # one of them is there: the later one is the state now
            self.web_busy = busy > idle

    def _settle(self, longest: float) -> bool:
        """Read wake-ups until none came for ``quiet`` seconds (True), or ``longest``
        seconds passed (False: they keep coming), or the pipe is closed (True)."""
        deadline = time.monotonic() + longest
        while (left := deadline - time.monotonic()) > 0:
            wait = min(self._quiet, left)
            ready, _, _ = select.select([self._wake], [], [], wait)
            if not ready:
                return wait == self._quiet  # else the deadline came before a quiet spell
            self._read()
            if self.closed:
                return True
        return False
