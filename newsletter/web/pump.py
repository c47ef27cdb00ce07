"""Send confirmations from a background thread of the web process, batched, off the request path.

A subscribe request only *signals* the pump once its rows are committed; the pump's own
thread wakes, waits while requests are being answered (at most ``YIELD_SECONDS`` at a
time, so it always makes progress), then runs ``run(pause)`` -- which delivers every
confirmation that is due, in batches, calling ``pause()`` between them. Signals that
arrive during a pass are folded into the next one: a burst of 1,000 subscriptions causes
a few delivery batches, not 1,000 competing claims, and the CPU the emails cost is spent
when the requests are answered, not while they wait.

``signal()`` returns a ticket; ``await wait(ticket)`` (or ``kick()``, blocking) returns once
a pass that started after that signal has finished, so a caller (a test, a background
task) can know its email was handled. The rows stay queued in the ledger whatever
happens here: the scheduler's ``deliver`` job sends anything the pump did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

YIELD_SECONDS = 0.25  # the longest the pump defers to requests before each batch
WAIT_SECONDS = 60.0  # how long ``wait`` / ``kick`` wait for a pass before giving up
_POLL = 0.005


class Pump:
    def __init__(
        self,
        run: Callable[[Callable[[], None]], None],
        *,
        busy: Callable[[], bool] = lambda: False,
        yield_seconds: float = YIELD_SECONDS,
        name: str = "confirmations",
    ) -> None:
        self._run = run
        self._busy = busy
        self._yield = yield_seconds
        self._name = name
        self._changed = threading.Condition()
        self._requested = 0  # tickets handed out
        self._finished = 0  # every ticket up to this one is handled
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def signal(self) -> int:
        """Note new work; returns the ticket to ``wait`` for. Never blocks."""
        with self._changed:
            self._requested += 1
            ticket = self._requested
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify_all()
        return ticket

    async def wait(self, ticket: int) -> None:
        """Return once ``ticket`` is handled (or after ``WAIT_SECONDS``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._changed:
            if self._finished >= ticket or self._closed:
                return
            self._waiters.append((ticket, loop, future))
        try:
            await asyncio.wait_for(future, WAIT_SECONDS)
        except TimeoutError:
            log.warning("%s: a pass is still running; the work stays queued for it", self._name)

    def kick(self) -> None:
        """Signal and block until that work is handled (for callers off the event loop)."""
        ticket = self.signal()
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            while self._finished < ticket and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    async def signal_and_wait(self) -> None:
        await self.wait(self.signal())

    def pause(self) -> None:
        """Defer to requests being answered, for at most ``yield_seconds``."""
        deadline = time.monotonic() + self._yield
        while self._busy() and time.monotonic() < deadline:
            time.sleep(_POLL)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            thread, self._thread = self._thread, None
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        self._settle(self._requested)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while self._finished >= self._requested and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                target = self._requested
            self.pause()
            try:
                self._run(self.pause)
            except Exception:  # the thread must live on; the rows stay queued
                log.exception("%s: the pass failed; the scheduler's job retries", self._name)
            self._settle(target)

    def _settle(self, target: int) -> None:
        with self._changed:
            self._finished = max(self._finished, target)
            ready = [w for w in self._waiters if w[0] <= self._finished]
            self._waiters = [w for w in self._waiters if w[0] > self._finished]
            self._changed.notify_all()
        for _, loop, future in ready:
            with contextlib.suppress(RuntimeError):  # that event loop is closed
                loop.call_soon_threadsafe(_done, future)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
