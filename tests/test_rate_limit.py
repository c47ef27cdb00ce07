"""The per-IP moving window of ``POST /subscribe``: every limit of the rate counts, a
refused hit is not counted, the window moves, idle keys are forgotten."""

from __future__ import annotations

import pytest

from newsletter.web.rate_limit import Limit, MovingWindow, read_limits


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param("10/minute", (Limit(10, 60.0),), id="one"),
        pytest.param("3 per hour", (Limit(3, 3600.0),), id="per"),
        pytest.param("5/second;100/day", (Limit(5, 1.0), Limit(100, 86400.0)), id="two"),
        pytest.param("2/10 seconds", (Limit(2, 10.0),), id="multiple-of-a-unit"),
    ],
)
def test_read_limits_reads_every_limit_of_the_rate(rate: str, expected: tuple[Limit, ...]) -> None:
    assert read_limits(rate) == expected


def hits(window: MovingWindow, times: list[float], key: str = "ip") -> list[bool]:
    return [window.hit(key, now=t) for t in times]


@pytest.mark.parametrize(
    ("limits", "times", "expected"),
    [
        pytest.param([Limit(2, 60)], [0, 1, 2], [True, True, False], id="third-in-a-minute"),
        # the 2nd latest allowed hit (at 0) must be more than 60 s old: at 60 it is not
        pytest.param([Limit(2, 60)], [0, 1, 60, 60.5], [True, True, False, True], id="window-edge"),
        pytest.param(
            [Limit(1, 10)], [0, 5, 9, 10, 10.5], [True, False, False, False, True], id="refused"
        ),
        pytest.param(
            [Limit(2, 1), Limit(3, 60)],
            [0, 0.1, 0.2, 1.5, 3, 61],
            [True, True, False, True, False, True],
            id="both-limits",
        ),
        pytest.param(
            [Limit(3, 60), Limit(2, 1)],
            [0, 0.1, 0.2, 1.5, 3],
            [True, True, False, True, False],
            id="both-limits-either-order",
        ),
        pytest.param([Limit(0, 60)], [0, 100], [False, False], id="zero"),
        pytest.param([Limit(5, 60), Limit(0, 1)], [0], [False], id="zero-among-others"),
    ],
)
def test_a_hit_is_allowed_while_every_limit_has_room(
    limits: list[Limit], times: list[float], expected: list[bool]
) -> None:
    assert hits(MovingWindow(limits), times) == expected


def test_keys_are_counted_apart() -> None:
    window = MovingWindow([Limit(1, 60)])
    assert [window.hit(k, now=0) for k in ("a", "b", "a", "b", "c")] == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_only_the_latest_hits_are_kept_and_they_are_enough() -> None:
    """A key keeps at most ``max N`` hits; old ones never make a new hit wrong."""
    window = MovingWindow([Limit(3, 10)])
    allowed = hits(window, [float(t) for t in range(0, 100, 4)])
    assert allowed == [True] * 25  # three hits in any 10 s at most (every 4 s)
    assert hits(window, [100, 100.5, 101]) == [True, False, False]


def test_idle_keys_are_forgotten_every_sweep() -> None:
    window = MovingWindow([Limit(5, 60), Limit(2, 10)], sweep_every=3)
    assert hits(window, [0], "a") + hits(window, [30], "b") == [True, True]
    assert window.keys() == 2
    assert hits(window, [60], "c") == [True]  # the sweep: "a" was last seen 60 s ago
    assert window.keys() == 3  # ... exactly 60 s: still in the window
    assert hits(window, [60.5, 61], "c") == [True, False]
    assert window.keys() == 3  # no sweep before the third hit after the last one
    assert hits(window, [90.5], "d") == [True]  # "a" (0) and "b" (30) are out
    assert window.keys() == 2
    assert hits(window, [91], "a") == [True]  # forgotten: a fresh start
    assert hits(window, [91.5, 92], "e") == [True, True]
    assert window.keys() == 4  # the next sweep comes at the third hit after 90.5


def test_by_default_a_sweep_comes_every_ten_thousand_hits() -> None:
    window = MovingWindow([Limit(1, 1)])
    assert hits(window, [0], "idle") == [True]
    assert all(window.hit(f"k{i}", now=10) for i in range(9_998))
    assert window.keys() == 9_999  # no sweep yet
    assert window.hit("last", now=20)  # the 10,000th hit sweeps: every key but its own
    assert window.keys() == 1


def test_a_sweep_keeps_a_key_still_inside_its_longest_window() -> None:
    window = MovingWindow([Limit(1, 60)], sweep_every=2)
    assert hits(window, [0], "a") == [True]
    assert hits(window, [59.9], "b") == [True]  # the sweep runs here: "a" stays
    assert hits(window, [59.95], "a") == [False]


@pytest.mark.parametrize(
    ("limits", "times", "now", "expected"),
    [
        pytest.param([Limit(2, 60)], [], 0, 0.0, id="no-hits"),
        pytest.param([Limit(2, 60)], [0], 1, 0.0, id="room-left"),
        pytest.param([Limit(2, 60)], [0, 10], 20, 40.0, id="oldest-of-the-two-leaves"),
        pytest.param([Limit(2, 60), Limit(3, 3600)], [0, 10, 70], 75, 3525.0, id="longer-limit"),
        pytest.param([Limit(1, 10), Limit(3, 60)], [0, 20, 40], 45, 15.0, id="the-later-of-two"),
        pytest.param([Limit(0, 60)], [], 0, 60.0, id="zero"),
        pytest.param([Limit(1, 10)], [0], 4, 6.0, id="one-allowed"),
    ],
)
def test_retry_after_is_when_every_limit_has_room_again(
    limits: list[Limit], times: list[float], now: float, expected: float
) -> None:
    window = MovingWindow(limits)
    hits(window, times)
    assert window.retry_after("ip", now=now) == expected
    assert window.keys() == (1 if times else 0)  # asking counts nothing and keeps no key
