"""Pure campaign timing and segment rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from newsletter.campaigns.schedule import (
    Segment,
    check_window,
    format_wall,
    is_stale,
    local_instants,
    make_segment,
    parse_at,
    progress_bar,
    wall_to_utc,
)
from newsletter.errors import CampaignError, UnknownTimeZoneError

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "wall", "instant"),
    [
        ("2026-12-01 09:00", datetime(2026, 12, 1, 9, 0), None),
        ("2026-12-01T09:00", datetime(2026, 12, 1, 9, 0), None),
        ("2026-12-01T09:00:30", datetime(2026, 12, 1, 9, 0, 30), None),
        (
            "2026-12-01T09:00:00+01:00",
            datetime(2026, 12, 1, 9, 0),
            datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        ),
        ("2026-12-01T09:00Z", datetime(2026, 12, 1, 9, 0), datetime(2026, 12, 1, 9, tzinfo=UTC)),
    ],
    ids=["space", "iso-wall", "seconds", "offset", "zulu"],
)
def test_parse_at_reads_wall_times_and_instants(
    text: str, wall: datetime, instant: datetime | None
) -> None:
    parsed = parse_at(text)
    assert (parsed.wall, parsed.instant) == (wall, instant)


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01 09:00", "", "09:00"])
def test_parse_at_refuses_other_text_naming_the_forms(text: str) -> None:
    with pytest.raises(CampaignError, match=re.escape("use e.g. '2026-12-01 09:00'")):
        parse_at(text)


@pytest.mark.parametrize(
    ("wall", "zone", "utc"),
    [
        (datetime(2026, 12, 1, 9), "Europe/Berlin", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        (datetime(2026, 7, 1, 9), "Europe/Berlin", datetime(2026, 7, 1, 7, tzinfo=UTC)),
        (datetime(2026, 12, 1, 9), "Pacific/Kiritimati", datetime(2026, 11, 30, 19, tzinfo=UTC)),
        # 02:30 does not exist on 2026-03-29 in Berlin: fold=0 reads it as 03:30 CEST
        (datetime(2026, 3, 29, 2, 30), "Europe/Berlin", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
    ],
    ids=["winter", "summer", "utc+14", "spring-forward-gap"],
)
def test_wall_to_utc(wall: datetime, zone: str, utc: datetime) -> None:
    assert wall_to_utc(wall, zone) == utc


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(UnknownTimeZoneError, match="unknown time zone 'Mars/Olympus'"):
        wall_to_utc(datetime(2026, 12, 1, 9), "Mars/Olympus")


def test_local_instants_put_eastern_zones_first() -> None:
    instants = local_instants(datetime(2026, 12, 1, 9), ["America/New_York", "Asia/Tokyo"])
    assert instants == {
        "Asia/Tokyo": datetime(2026, 12, 1, 0, tzinfo=UTC),
        "America/New_York": datetime(2026, 12, 1, 14, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (NOW - timedelta(minutes=1), NOW, "is in the past"),
        (NOW, NOW + timedelta(days=11), "more than 10 days ahead"),
    ],
    ids=["past", "too-far"],
)
def test_check_window_refuses(first: datetime, last: datetime, message: str) -> None:
    with pytest.raises(CampaignError, match=message):
        check_window(first, last, now=NOW, max_days=10)


def test_check_window_accepts_now_and_the_limit() -> None:
    check_window(NOW, NOW + timedelta(days=10), now=NOW, max_days=10)


@pytest.mark.parametrize(
    ("age", "stale"),
    [(timedelta(hours=5, minutes=59), False), (timedelta(hours=6, minutes=1), True)],
    ids=["fresh", "stale"],
)
def test_is_stale(age: timedelta, stale: bool) -> None:
    assert is_stale(NOW - age, now=NOW, stale_hours=6) is stale


@pytest.mark.parametrize(
    ("segment", "tags", "matches"),
    [
        (Segment(), [], True),
        (Segment(("back",)), ["desk"], False),
        (Segment(("back", "desk")), ["desk"], True),
        (Segment((), ("vip",)), ["back", "vip"], False),
        (Segment(("back",), ("vip",)), ["back"], True),
        (Segment(("back",), ("vip",)), ["BACK", "VIP"], False),
    ],
    ids=["everyone", "not-included", "any-of", "excluded", "in-not-out", "case"],
)
def test_segment_rule(segment: Segment, tags: list[str], matches: bool) -> None:
    assert segment.matches(tags) is matches


def test_make_segment_normalises_and_refuses_contradictions() -> None:
    assert make_segment([" Back", "back,desk"], ["VIP"]) == Segment(("back", "desk"), ("vip",))
    with pytest.raises(CampaignError, match="tag 'vip' is both included and excluded"):
        make_segment(["vip"], ["Vip"])


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (0, 10, "[----------]   0%  0/10"),
        (5, 10, "[#####-----]  50%  5/10"),
        (10_000, 10_000, "[##########] 100%  10,000/10,000"),
        (0, 0, "[----------]   0%  0/0"),
    ],
    ids=["empty", "half", "full", "nothing"],
)
def test_progress_bar(done: int, total: int, bar: str) -> None:
    assert progress_bar(done, total, width=10) == bar


def test_format_wall_keeps_seconds_only_when_set() -> None:
    assert format_wall(datetime(2026, 12, 1, 9)) == "2026-12-01 09:00"
    assert format_wall(datetime(2026, 12, 1, 9, 0, 5)) == "2026-12-01 09:00:05"
