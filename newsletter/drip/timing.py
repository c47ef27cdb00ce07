"""Send-window and DST arithmetic (pure: every time is passed in, zones are tzinfo objects).

Decisions (copied into the README):

* **Delays are wall-clock delays in the subscriber's zone.** ``after: 3d`` from a send at
  08:10 local is 08:10 local three days later, whether or not a DST change lies in between
  (so a step does not drift an hour out of, or into, the window twice a year).
* **A nonexistent local time** (the spring-forward gap, e.g. 02:30 in Berlin on the last
  Sunday of March) is moved forward by the length of the gap (02:30 -> 03:30 CEST).
* **An ambiguous local time** (the fall-back overlap, 02:30 happens twice) means its first
  occurrence (summer time): the earlier instant, so nothing waits an extra hour.
* **The window** ``HH:MM-HH:MM`` is half-open, ``[start, end)``, on the local clock. A step
  that becomes due outside it goes out at the next opening of the window, never outside
  it (only the first step of a sequence ignores the window). A window that lies wholly
  inside a DST gap (e.g. 02:00-03:00 on the spring-forward night) does not exist that day;
  the next day's window is used.
* **Late sends** (the service was down): a step whose due time has passed goes out at the
  first moment the planner runs inside a window - late, never skipped.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from newsletter.content.model import SendWindow

_SEARCH_DAYS = 3  # a window is at most one day away; two more days cover DST oddities


def resolve_local(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``zone``.

    Nonexistent times move forward by the gap; ambiguous ones take the first occurrence.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"resolve_local wants a naive wall-clock time, got {wall!r}")
    # fold=0 applies the offset in force *before* a transition: in a gap that lands after
    # it (shifted by the gap), in an overlap it is the first (summer-time) occurrence.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def local_wall(instant: datetime, zone: tzinfo) -> datetime:
    """The naive local wall-clock reading of an aware instant."""
    return _aware(instant).astimezone(zone).replace(tzinfo=None)


def local_date(instant: datetime, zone: tzinfo) -> date:
    return local_wall(instant, zone).date()


def add_wall_clock(instant: datetime, delay: timedelta, zone: tzinfo) -> datetime:
    """``instant`` plus ``delay`` measured on the local wall clock (see the module doc)."""
    return resolve_local(local_wall(instant, zone) + delay, zone)


def window_bounds(day: date, zone: tzinfo, window: SendWindow) -> tuple[datetime, datetime]:
    """The UTC instants where the window opens and closes on local ``day``."""
    start = resolve_local(datetime.combine(day, window.start), zone)
    end = resolve_local(datetime.combine(day, window.end), zone)
    return start, end


def in_window(instant: datetime, zone: tzinfo, window: SendWindow) -> bool:
    start, end = window_bounds(local_date(instant, zone), zone, window)
    return start <= _aware(instant) < end


def next_in_window(earliest: datetime, zone: tzinfo, window: SendWindow) -> datetime:
    """The first instant at or after ``earliest`` that lies inside the window."""
    earliest = _aware(earliest).astimezone(UTC)
    day = local_date(earliest, zone)
    for offset in range(_SEARCH_DAYS):
        start, end = window_bounds(day + timedelta(days=offset), zone, window)
        if start >= end:
            continue  # the whole window lies in a DST gap that day: it does not exist
        if earliest < start:
            return start
        if earliest < end:
            return earliest
    raise AssertionError(f"no send window found after {earliest}")  # pragma: no cover


def window_start_after_day(instant: datetime, zone: tzinfo, window: SendWindow) -> datetime:
    """The opening of the window on the local day after the one ``instant`` falls on."""
    day = local_date(instant, zone) + timedelta(days=1)
    return window_bounds(day, zone, window)[0]


def step_due_at(
    previous_sent_at: datetime, delay: timedelta, zone: tzinfo, window: SendWindow
) -> datetime:
    """When a later step is due: ``delay`` after the previous send, inside the window."""
    return next_in_window(add_wall_clock(previous_sent_at, delay, zone), zone, window)


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}; pass an aware UTC datetime")
    return instant
