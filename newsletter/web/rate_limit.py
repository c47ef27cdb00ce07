"""An in-process moving-window rate limit per key: ``POST /subscribe`` per client IP,
``POST /subscribe/{source}`` per source, the REST API per key and its failed attempts per
client address.

``RATE`` is written in the ``limits`` syntax (``10/minute``, ``10/minute;100/day``): a hit
is allowed when, for every limit ``N/period`` in it, fewer than ``N`` hits were allowed in
the last ``period`` (moving window, as ``limits``' ``MovingWindowRateLimiter``: the ``N``-th
latest allowed hit is more than ``period`` old); a refused hit is not counted. Unlike
``limits.parse``, which the app used before, every limit of the string counts, not only
the first.

Why not ``limits``' in-memory storage: on every hit it starts a new timer thread if the
last one (10 ms) has run out, and the event loop waits for each thread to start (under
load, a thread every 10 ms); and it inserts each hit at the front of a list, so a hit
costs more the more hits the window holds. Here a hit is a few deque operations: only
the ``max N`` latest hits of a key are kept, and keys that fell out of every window are
forgotten every ``SWEEP_EVERY`` hits. Pure: the caller passes the (monotonic) time and
keeps the object to one thread (the event loop).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from limits import parse_many

SWEEP_EVERY = 10_000  # hits between two passes that forget idle keys


@dataclass(frozen=True)
class Limit:
    amount: int  # at most this many hits ...
    seconds: float  # ... in any period this long


def read_limits(rate: str) -> tuple[Limit, ...]:
    """Every limit of ``rate`` (``limits`` syntax, validated by the settings and the
    sources file)."""
    return tuple(Limit(item.amount, float(item.get_expiry())) for item in parse_many(rate))


class MovingWindow:
    def __init__(self, limits: Sequence[Limit], *, sweep_every: int = SWEEP_EVERY) -> None:
        self._limits = tuple(limits)
        self._longest = max(limit.seconds for limit in self._limits)
        self._kept = max(limit.amount for limit in self._limits)
        self._hits: dict[str, deque[float]] = {}
        self._sweep_every = sweep_every
        self._until_sweep = sweep_every

    def hit(self, key: str, *, now: float) -> bool:
        """Count a hit of ``key`` at ``now`` (seconds) and return True, unless a limit is
        reached: then False, and nothing is counted."""
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque(maxlen=self._kept)
        for limit in self._limits:
            if limit.amount <= 0:  # ``0/minute``: nothing is allowed
                return False
            if len(hits) >= limit.amount and hits[-limit.amount] >= now - limit.seconds:
                return False
        hits.append(now)
        return True

    def retry_after(self, key: str, *, now: float) -> float:
        """How long after ``now`` a hit of ``key`` is refused at most (seconds; 0 if no
        limit is reached): the time until the oldest hit that fills a limit leaves its
        window. Nothing is counted."""
        hits = self._hits.get(key) or deque()
        wait = 0.0
        for limit in self._limits:
            if limit.amount <= 0:
                wait = max(wait, limit.seconds)
            elif len(hits) >= limit.amount:
                wait = max(wait, hits[-limit.amount] + limit.seconds - now)
        return wait

    def keys(self) -> int:
        """How many keys are remembered (for tests)."""
        return len(self._hits)

    def _sweep(self, now: float) -> None:
        """Forget the keys whose latest hit is outside every window."""
        self._until_sweep = self._sweep_every
        oldest = now - self._longest
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] < oldest]:
            del self._hits[key]
