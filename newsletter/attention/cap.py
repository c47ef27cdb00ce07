"""``NEWSLETTER_MARKETING_CAP``: at most N marketing emails per period (pure).

``1/24h`` (the default), ``2/7d``, ``3/1w``; ``off`` turns the cap off. The period is a rolling
one measured on the instants the emails were handed over: ``1/24h`` means no two marketing
emails within 24 hours of each other, whatever the subscriber's local day. Where a deferred
email goes is then placed in the subscriber's local send window (see ``decide``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
OFF = ("off", "none", "0")


@dataclass(frozen=True)
class Cap:
    """At most ``count`` marketing emails in any ``period``."""

    count: int
    period: timedelta

    def describe(self) -> str:
        hours = self.period / timedelta(hours=1)
        if self.period % timedelta(days=1) == timedelta():
            return f"{self.count}/{self.period.days}d"
        return f"{self.count}/{hours:g}h"


def parse_cap(text: str) -> Cap | None:
    """``"1/24h"`` -> ``Cap(1, 24h)``; ``"off"`` -> None; ValueError naming the forms."""
    cleaned = text.strip().lower()
    if cleaned in OFF:
        return None
    match = _CAP.match(cleaned)
    if match is None:
        raise ValueError(
            f"cannot read the cap {text[:40]!r}: write COUNT/PERIOD with h, d or w, "
            "e.g. 1/24h, 2/7d or 1/1w (or off)"
        )
    count, amount, unit = int(match[1]), int(match[2]), match[3]
    if count < 1 or amount < 1:
        raise ValueError(f"cannot read the cap {text[:40]!r}: count and period must be at least 1")
    return Cap(count, amount * _UNITS[unit])


def next_free(used: Iterable[datetime], caps: Sequence[Cap], *, at: datetime) -> datetime:
    """The first instant at or after ``at`` when one more email fits under every cap.

    ``used`` are the instants of emails already counted (sent or in flight).
    """
    moments = sorted(used)
    free = at
    for cap in caps:
        window = [u for u in moments if u > free - cap.period]
        if len(window) >= cap.count:
            # the (len - count + 1)-th newest must leave the period first
            free = max(free, window[len(window) - cap.count] + cap.period)
    if free != at:
        return next_free(moments, caps, at=free)  # a later cap may move it again
    return free


def fits(used: Iterable[datetime], caps: Sequence[Cap], *, at: datetime) -> bool:
    return next_free(used, caps, at=at) == at


def longest(caps: Sequence[Cap]) -> timedelta:
    return max((c.period for c in caps), default=timedelta())
