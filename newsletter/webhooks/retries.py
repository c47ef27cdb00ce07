"""When a failed webhook is tried again, and when it is given up (pure).

Exponential backoff with jitter from ``newsletter.backoff`` (1, 2, 4 ... minutes, capped at
6 hours, each drawn from the upper half of its interval) for ``RETRY_PERIOD`` after the
first attempt; the last attempt is made at the end of that period, and a failure then is
final.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from newsletter.backoff import retry_delay

RETRY_PERIOD = timedelta(days=3)


def next_attempt(
    attempts: int,
    *,
    first_attempt_at: datetime,
    now: datetime,
    uniform: Callable[[float, float], float],
) -> datetime | None:
    """After ``attempts`` failed attempts (the last at ``now``): the next one's time, or
    None when the retry period is over and the delivery has failed for good."""
    deadline = first_attempt_at + RETRY_PERIOD
    if now >= deadline:
        return None
    delay = timedelta(seconds=retry_delay(attempts, uniform=uniform))
    return min(now + delay, deadline)
