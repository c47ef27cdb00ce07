"""Retry delays: exponential backoff with full jitter (pure; randomness is injected)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

BASE_SECONDS = 60.0
CAP_SECONDS = 6 * 3600.0


def retry_delay(
    attempts: int,
    *,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before attempt ``attempts + 1``.

    The provider's ``Retry-After`` wins when given; otherwise 1, 2, 4 ... minutes (capped
    at 6 hours), each drawn uniformly from the upper half of its interval so that workers
    that failed together do not retry together.
    """
    if retry_after is not None and not retry_after <= 0:
        return min(bounded_wait(retry_after), CAP_SECONDS)
    ceiling = min(CAP_SECONDS, BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return uniform(ceiling / 2, ceiling)


# The longest wait any provider answer can impose (``Retry-After``, ``X-RateLimit-Reset``,
# in seconds, an HTTP date, epoch seconds or milliseconds): a wrong or hostile header
# never stops sending for longer than this; the batch after it simply asks again.
MAX_PROVIDER_WAIT = 3600.0


def bounded_wait(seconds: float) -> float:
    """``seconds`` clamped to ``0 .. MAX_PROVIDER_WAIT`` (NaN counts as the cap)."""
    if math.isnan(seconds):
        return MAX_PROVIDER_WAIT
    return min(max(seconds, 0.0), MAX_PROVIDER_WAIT)
