"""Send windows, wall-clock delays and DST gaps/overlaps (pure, table-driven)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.content.model import SendWindow
from newsletter.drip.timing import (
    add_wall_clock,
    in_window,
    local_wall,
    next_in_window,
    resolve_local,
    step_due_at,
    window_start_after_day,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
MORNING = SendWindow(time(8), time(11))
NIGHT = SendWindow(time(2), time(3))  # falls into DST gaps and overlaps on purpose


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        pytest.param(datetime(2026, 7, 1, 8, 0), BERLIN, utc(2026, 7, 1, 6, 0), id="summer"),
        pytest.param(datetime(2026, 12, 1, 8, 0), BERLIN, utc(2026, 12, 1, 7, 0), id="winter"),
        # 2026-03-29 02:30 does not exist in Berlin: moved forward by the gap (03:30 CEST).
        pytest.param(datetime(2026, 3, 29, 2, 30), BERLIN, utc(2026, 3, 29, 1, 30), id="gap"),
        # 2026-10-25 02:30 happens twice in Berlin: the first time (CEST).
        pytest.param(datetime(2026, 10, 25, 2, 30), BERLIN, utc(2026, 10, 25, 0, 30), id="overlap"),
        # New York: 2026-03-08 02:30 does not exist (03:30 EDT), 2026-11-01 01:30 twice.
        pytest.param(datetime(2026, 3, 8, 2, 30), NEW_YORK, utc(2026, 3, 8, 7, 30), id="ny-gap"),
        pytest.param(
            datetime(2026, 11, 1, 1, 30), NEW_YORK, utc(2026, 11, 1, 5, 30), id="ny-overlap"
        ),
    ],
)
def test_resolve_local(wall: datetime, zone: ZoneInfo, expected: datetime) -> None:
    assert resolve_local(wall, zone) == expected


def test_resolve_local_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        resolve_local(utc(2026, 1, 1), BERLIN)


@pytest.mark.parametrize(
    ("start", "delay", "zone", "expected"),
    [
        pytest.param(utc(2026, 7, 1, 6), timedelta(days=3), BERLIN, utc(2026, 7, 4, 6), id="plain"),
        # 08:00 CEST + 3 days across the end of summer time is 08:00 CET (73 real hours).
        pytest.param(
            utc(2026, 10, 23, 6), timedelta(days=3), BERLIN, utc(2026, 10, 26, 7), id="fall-back"
        ),
        # 08:00 EST + 3 days across the start of summer time is 08:00 EDT (71 real hours).
        pytest.param(
            utc(2026, 3, 6, 13), timedelta(days=3), NEW_YORK, utc(2026, 3, 9, 12), id="spring"
        ),
        pytest.param(
            utc(2026, 3, 28, 1, 30),
            timedelta(days=1),
            BERLIN,
            utc(2026, 3, 29, 1, 30),
            id="into-gap",
        ),
        pytest.param(utc(2026, 7, 1, 6), timedelta(hours=12), TOKYO, utc(2026, 7, 1, 18), id="h"),
    ],
)
def test_add_wall_clock(
    start: datetime, delay: timedelta, zone: ZoneInfo, expected: datetime
) -> None:
    assert add_wall_clock(start, delay, zone) == expected


@pytest.mark.parametrize(
    ("earliest", "zone", "window", "expected"),
    [
        pytest.param(utc(2026, 7, 1, 4), BERLIN, MORNING, utc(2026, 7, 1, 6), id="before-opens"),
        pytest.param(utc(2026, 7, 1, 7), BERLIN, MORNING, utc(2026, 7, 1, 7), id="inside"),
        pytest.param(utc(2026, 7, 1, 6), BERLIN, MORNING, utc(2026, 7, 1, 6), id="at-start"),
        pytest.param(utc(2026, 7, 1, 9), BERLIN, MORNING, utc(2026, 7, 2, 6), id="at-end-next-day"),
        pytest.param(utc(2026, 7, 1, 13), BERLIN, MORNING, utc(2026, 7, 2, 6), id="after"),
        pytest.param(utc(2026, 7, 1, 23), BERLIN, MORNING, utc(2026, 7, 2, 6), id="local-next-day"),
        pytest.param(utc(2026, 7, 1, 16), TOKYO, MORNING, utc(2026, 7, 1, 23), id="tokyo"),
        # The window 02:00-03:00 does not exist on 2026-03-29 in Berlin: it opens at the
        # instant the clocks jump (02:00 CET = 03:00 CEST) and is empty, so next day.
        pytest.param(utc(2026, 3, 28, 22), BERLIN, NIGHT, utc(2026, 3, 30, 0), id="window-in-gap"),
        # On 2026-10-25 the window 02:00-03:00 is the first (summer-time) pass.
        pytest.param(
            utc(2026, 10, 24, 22), BERLIN, NIGHT, utc(2026, 10, 25, 0), id="window-in-overlap"
        ),
        pytest.param(utc(2026, 12, 31, 12), BERLIN, MORNING, utc(2027, 1, 1, 7), id="new-year"),
    ],
)
def test_next_in_window(
    earliest: datetime, zone: ZoneInfo, window: SendWindow, expected: datetime
) -> None:
    found = next_in_window(earliest, zone, window)
    assert found == expected
    if found > earliest:
        assert in_window(found, zone, window)


@pytest.mark.parametrize(
    ("sent", "delay", "zone", "expected"),
    [
        pytest.param(utc(2026, 7, 1, 6), timedelta(days=3), BERLIN, utc(2026, 7, 4, 6), id="exact"),
        # Sent at 15:00 local (the welcome): +2d lands after the window, so the next morning.
        pytest.param(utc(2026, 7, 1, 13), timedelta(days=2), BERLIN, utc(2026, 7, 4, 6), id="pm"),
        # Sent late at 10:50 local: +3d is still inside the window at 10:50.
        pytest.param(
            utc(2026, 7, 1, 8, 50), timedelta(days=3), BERLIN, utc(2026, 7, 4, 8, 50), id="late"
        ),
        pytest.param(
            utc(2026, 10, 22, 6), timedelta(days=4), BERLIN, utc(2026, 10, 26, 7), id="dst-end"
        ),
        pytest.param(
            utc(2026, 3, 5, 13), timedelta(days=3), NEW_YORK, utc(2026, 3, 8, 12), id="dst-start"
        ),
        pytest.param(utc(2026, 7, 1, 6), timedelta(0), BERLIN, utc(2026, 7, 1, 6), id="zero"),
    ],
)
def test_step_due_at(sent: datetime, delay: timedelta, zone: ZoneInfo, expected: datetime) -> None:
    assert step_due_at(sent, delay, zone, MORNING) == expected


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        pytest.param(utc(2026, 7, 1, 7), BERLIN, utc(2026, 7, 2, 6), id="morning"),
        pytest.param(utc(2026, 7, 1, 23), BERLIN, utc(2026, 7, 3, 6), id="after-local-midnight"),
        pytest.param(utc(2026, 10, 24, 7), BERLIN, utc(2026, 10, 25, 7), id="dst-end"),
    ],
)
def test_window_start_after_day(instant: datetime, zone: ZoneInfo, expected: datetime) -> None:
    assert window_start_after_day(instant, zone, MORNING) == expected


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param(utc(2026, 7, 1, 5, 59), False, id="before"),
        pytest.param(utc(2026, 7, 1, 6), True, id="start-inclusive"),
        pytest.param(utc(2026, 7, 1, 8, 59), True, id="inside"),
        pytest.param(utc(2026, 7, 1, 9), False, id="end-exclusive"),
    ],
)
def test_in_window(instant: datetime, expected: bool) -> None:
    assert in_window(instant, BERLIN, MORNING) is expected


NAIVE = datetime(2026, 11, 24, 9, 0)
BERLIN_WINDOW = SendWindow(time(8), time(11))


@pytest.mark.parametrize(
    "call",
    [
        lambda: next_in_window(NAIVE, ZoneInfo("Europe/Berlin"), BERLIN_WINDOW),
        lambda: in_window(NAIVE, ZoneInfo("Europe/Berlin"), BERLIN_WINDOW),
        lambda: step_due_at(NAIVE, timedelta(days=3), ZoneInfo("Europe/Berlin"), BERLIN_WINDOW),
        lambda: local_wall(NAIVE, ZoneInfo("Europe/Berlin")),
    ],
    ids=["next_in_window", "in_window", "step_due_at", "local_wall"],
)
def test_naive_datetimes_are_refused_saying_what_to_pass(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"naive datetime .* pass an aware UTC datetime"):
        call()


@pytest.mark.parametrize(
    ("earliest", "expected"),
    [
        pytest.param(datetime(2026, 7, 1, 9, 30, tzinfo=BERLIN), utc(2026, 7, 1, 7, 30), id="in"),
        pytest.param(datetime(2026, 7, 1, 6, 0, tzinfo=BERLIN), utc(2026, 7, 1, 6, 0), id="before"),
    ],
)
def test_next_in_window_answers_in_utc_whatever_zone_it_was_given(
    earliest: datetime, expected: datetime
) -> None:
    """Stored as given: a +02:00 value among UTC ones would sort wrongly as text (SQLite)."""
    found = next_in_window(earliest, BERLIN, MORNING)
    assert found == expected
    assert found.tzinfo is UTC
