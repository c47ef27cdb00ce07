"""Coalesce "send the confirmations now" requests from many web requests into one runner.

Each subscribe request kicks the pump after its answer is sent; if a run is in progress the
kick only marks more work, which the running thread picks up before it stops. So a burst
of 1,000 subscriptions causes a few delivery batches, not 1,000 competing claims.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Pump:
    def __init__(self, run: Callable[[], None]) -> None:
        self._run = run
        self._busy = threading.Lock()
        self._pending = threading.Event()

    def kick(self) -> None:
        self._pending.set()
        while self._pending.is_set():
            if not self._busy.acquire(blocking=False):
                return  # the running thread will see the pending flag
            try:
                while self._pending.is_set():
                    self._pending.clear()
                    self._run()
            finally:
                self._busy.release()
