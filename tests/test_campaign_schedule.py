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
    parse_where,
    progress_bar,
    segment_from,
    shown_in,
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


@pytest.mark.parametrize(
    ("segment", "attributes", "matches"),
    [
        pytest.param(Segment(where=(("plan", "pro"),)), {"plan": "pro"}, True, id="equal"),
        pytest.param(Segment(where=(("plan", "pro"),)), {"plan": "free"}, False, id="other"),
        pytest.param(Segment(where=(("plan", "pro"),)), {}, False, id="missing"),
        pytest.param(Segment(where=(("seats", "3"),)), {"seats": 3}, True, id="number-as-text"),
        pytest.param(Segment(where=(("vip", "true"),)), {"vip": True}, True, id="json-boolean"),
        pytest.param(
            Segment(where=(("plan", "pro"), ("country", "DE"))),
            {"plan": "pro", "country": "FR"},
            False,
            id="all-of-them",
        ),
        pytest.param(Segment(), {"plan": "pro"}, True, id="no-conditions"),
        pytest.param(
            Segment(("back",), where=(("plan", "pro"),)), {"plan": "pro"}, False, id="tags-first"
        ),
    ],
)
def test_segment_rule_with_custom_fields(
    segment: Segment, attributes: dict[str, object], matches: bool
) -> None:
    assert segment.matches([], attributes) is matches


def test_without_attributes_only_the_tags_are_tested() -> None:
    assert Segment(where=(("plan", "pro"),)).matches(["back"]) is True
    assert Segment(where=(("plan", "pro"),)).matches(["back"], None) is True


@pytest.mark.parametrize(
    ("segment", "text"),
    [
        pytest.param(Segment(), "all active subscribers", id="everyone"),
        pytest.param(Segment(("back", "desk")), "tags: any of back, desk", id="include"),
        pytest.param(Segment((), ("vip",)), "tags: none of vip", id="exclude"),
        pytest.param(
            Segment(("back",), ("vip", "old")), "tags: any of back; none of vip, old", id="both"
        ),
        pytest.param(
            Segment(where=(("plan", "pro"), ("country", "DE"))),
            "where plan=pro and country=DE",
            id="where-only",
        ),
        pytest.param(
            Segment(("back",), where=(("plan", "pro"),)),
            "tags: any of back; where plan=pro",
            id="tags-and-where",
        ),
    ],
)
def test_segment_describe(segment: Segment, text: str) -> None:
    assert segment.describe() == text


def test_make_segment_reads_where_and_drops_empty_tags() -> None:
    assert make_segment(["", "a,,b", " "], [","], ["plan=pro", "note=a=b"]) == Segment(
        ("a", "b"), (), (("plan", "pro"), ("note", "a=b"))
    )


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        pytest.param([], (), id="none"),
        pytest.param([" plan =pro"], (("plan", "pro"),), id="name-trimmed"),
        pytest.param(["plan="], (("plan", ""),), id="empty-value"),
        pytest.param(["_x9=1", "Y=2"], (("_x9", "1"), ("Y", "2")), id="names"),
        pytest.param(["a" * 40 + "=1"], (("a" * 40, "1"),), id="40-characters"),
    ],
)
def test_parse_where(texts: list[str], expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_where(texts) == expected


@pytest.mark.parametrize(
    "text",
    ["plan", "=pro", "9plan=pro", "pl-an=pro", "a" * 41 + "=1", "pl an=pro"],
)
def test_parse_where_refuses_what_is_not_name_equals_value(text: str) -> None:
    with pytest.raises(CampaignError) as refused:
        parse_where([text])
    assert str(refused.value) == (
        f"bad --where {text!r}: write NAME=VALUE with a custom field name, e.g. --where plan=pro"
    )


def test_parse_where_shows_80_characters_of_a_long_bad_text() -> None:
    text = "x" * 100
    with pytest.raises(CampaignError) as refused:
        parse_where([text])
    assert str(refused.value).startswith(f"bad --where {'x' * 80!r}: ")


def test_parse_where_refuses_a_name_given_twice() -> None:
    with pytest.raises(CampaignError) as refused:
        parse_where(["plan=pro", "plan=free"])
    assert str(refused.value) == "--where names 'plan' twice; give each field once"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param(None, (), id="none"),
        pytest.param({}, (), id="empty"),
        pytest.param({"plan": "pro"}, (("plan", "pro"),), id="stored"),
    ],
)
def test_segment_from_a_stored_row(
    where: dict[str, str] | None, expected: tuple[tuple[str, str], ...]
) -> None:
    assert segment_from(["back"], ["vip"], where) == Segment(("back",), ("vip",), expected)


def test_parse_at_reads_a_lower_case_z_and_drops_microseconds() -> None:
    parsed = parse_at(" 2026-12-01T09:00:00.123456z ")
    assert (parsed.wall, parsed.instant) == (
        datetime(2026, 12, 1, 9, 0),
        datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    assert parse_at("2026-12-01 09:00:00.5").wall == datetime(2026, 12, 1, 9, 0)


def test_check_window_messages_show_wall_times_in_the_zone() -> None:
    with pytest.raises(CampaignError) as past:
        check_window(
            NOW - timedelta(minutes=1), NOW, now=NOW, max_days=10, zone_name="Europe/Berlin"
        )
    assert str(past.value) == (
        "2026-11-24 09:59 Europe/Berlin is in the past (now 2026-11-24 10:00 Europe/Berlin); "
        "pick a later --at, or use `newsletter campaign send NAME` to send now"
    )
    with pytest.raises(CampaignError) as far:
        check_window(NOW, NOW + timedelta(days=10, minutes=1), now=NOW, max_days=10)
    assert str(far.value) == (
        "2026-12-04 09:01 UTC is more than 10 days ahead; pick an earlier --at "
        "(limit: NEWSLETTER_CAMPAIGN_MAX_SCHEDULE_DAYS)"
    )


def test_shown_in() -> None:
    assert shown_in(NOW, "Asia/Tokyo") == "2026-11-24 18:00 Asia/Tokyo"


def test_a_start_exactly_at_the_staleness_limit_is_not_stale() -> None:
    assert is_stale(NOW - timedelta(hours=6), now=NOW, stale_hours=6) is False
    assert is_stale(NOW - timedelta(hours=1), now=NOW, stale_hours=0.5) is True
    assert is_stale(NOW + timedelta(hours=7), now=NOW, stale_hours=6) is False


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (1, 1, "[##########] 100%  1/1"),
        (0, 1, "[----------]   0%  0/1"),
        (15, 10, "[##########] 100%  15/10"),
        (3, -1, "[----------]   0%  3/-1"),
        (1, 3, "[###-------]  33%  1/3"),
    ],
    ids=["one-of-one", "none-of-one", "more-than-all", "negative-total", "third"],
)
def test_progress_bar_edges(done: int, total: int, bar: str) -> None:
    assert progress_bar(done, total, width=10) == bar


def test_progress_bar_is_30_wide_by_default() -> None:
    assert progress_bar(1, 2) == f"[{'#' * 15}{'-' * 15}]  50%  1/2"
