"""Retry delays (pure): the schedule is pinned with an injected jitter source."""

from __future__ import annotations

import pytest

from newsletter.backoff import BASE_SECONDS, CAP_SECONDS, retry_delay


def upper(low: float, high: float) -> float:
    """The jitter source at its top end: the delay is the interval's ceiling."""
    return high


def lower(low: float, high: float) -> float:
    return low


def test_constants_are_one_minute_and_six_hours() -> None:
    assert (BASE_SECONDS, CAP_SECONDS) == (60.0, 21600.0)


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [(0, 60.0), (1, 60.0), (2, 120.0), (3, 240.0), (9, 15360.0), (10, 21600.0), (50, 21600.0)],
    ids=["0", "1", "2", "3", "9", "10", "cap"],
)
def test_schedule_doubles_from_one_minute_to_the_cap(attempts: int, ceiling: float) -> None:
    assert retry_delay(attempts, uniform=upper) == ceiling
    assert retry_delay(attempts, uniform=lower) == ceiling / 2


def test_jitter_is_drawn_from_the_upper_half_of_the_interval() -> None:
    seen: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        seen.append((low, high))
        return 123.0

    assert retry_delay(3, uniform=record) == 123.0
    assert seen == [(120.0, 240.0)]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(1.0, 1.0), (0.5, 0.5), (10**6, 3600.0), (3600.0, 3600.0), (3601.0, 3600.0), (1e12, 3600.0)],
    ids=["1", "0.5", "10^6-capped", "exactly-cap", "just-over", "1e12"],
)
def test_retry_after_wins_and_is_capped_at_one_hour(retry_after: float, expected: float) -> None:
    def never(low: float, high: float) -> float:
        raise AssertionError("Retry-After given: no jitter")

    assert retry_delay(4, retry_after=retry_after, uniform=never) == expected


@pytest.mark.parametrize(
    "retry_after", [0.0, -5.0, None, float("-inf")], ids=["0", "negative", "none", "-inf"]
)
def test_a_useless_retry_after_falls_back_to_the_schedule(retry_after: float | None) -> None:
    assert retry_delay(2, retry_after=retry_after, uniform=upper) == 120.0


def test_a_nan_retry_after_waits_the_cap_not_forever() -> None:
    assert retry_delay(1, retry_after=float("nan"), uniform=upper) == 3600.0
