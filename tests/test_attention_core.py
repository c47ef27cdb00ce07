"""The pure attention core: cap parsing and arithmetic, priorities, the per-subscriber
decision (who goes, who moves where, who is skipped), and topic resolution."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.attention.cap import Cap, fits, longest, next_free, parse_cap
from newsletter.attention.decide import (
    Candidate,
    Hold,
    Upcoming,
    after_held_days,
    decide,
    sends_at_once,
    stale_limit,
)
from newsletter.attention.priority import parse_priority, priority_name
from newsletter.attention.topics import Topic, Topics, parse_topics
from newsletter.content.model import SendWindow
from newsletter.errors import ContentError

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
H = timedelta(hours=1)
DAILY = (Cap(1, DAY),)
WINDOW = SendWindow(time(8, 0), time(11, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1/24h", Cap(1, DAY)),
        ("2/7d", Cap(2, 7 * DAY)),
        (" 3 / 1w ", Cap(3, 7 * DAY)),
        ("1/12H", Cap(1, 12 * H)),
        ("off", None),
        ("none", None),
    ],
    ids=["daily", "two-a-week", "spaces-week", "upper-case", "off", "none"],
)
def test_parse_cap_reads_count_and_period(text: str, expected: Cap | None) -> None:
    assert parse_cap(text) == expected


@pytest.mark.parametrize(
    "text", ["", "1", "1/", "/24h", "1/24", "1/24s", "0/24h", "1/0d", "a/b", "1/24h/2"]
)
def test_parse_cap_refuses_anything_else_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"COUNT/PERIOD|at least 1"):
        parse_cap(text)


def test_parse_cap_errors_quote_at_most_40_characters_of_the_text() -> None:
    with pytest.raises(ValueError, match="cannot read the cap") as caught:
        parse_cap("x" * 50)
    assert str(caught.value) == (
        f"cannot read the cap {'x' * 40!r}: write COUNT/PERIOD with h, d or w, "
        "e.g. 1/24h, 2/7d or 1/1w (or off)"
    )
    with pytest.raises(ValueError, match="cannot read the cap") as caught:
        parse_cap("0/24h" + " " * 45)
    assert str(caught.value) == (
        f"cannot read the cap {'0/24h' + ' ' * 35!r}: count and period must be at least 1"
    )


@pytest.mark.parametrize(
    ("cap", "text"),
    [(Cap(1, DAY), "1/1d"), (Cap(2, 7 * DAY), "2/7d"), (Cap(1, 12 * H), "1/12h")],
    ids=["day", "week", "hours"],
)
def test_cap_describe(cap: Cap, text: str) -> None:
    assert cap.describe() == text


@pytest.mark.parametrize(
    ("used", "caps", "expected"),
    [
        ([], DAILY, T),
        ([T - 25 * H], DAILY, T),
        ([T - DAY], DAILY, T),  # exactly 24 h ago has left the period
        ([T - 2 * H], DAILY, T + 22 * H),
        ([T - 2 * H, T - 30 * H], (Cap(2, 7 * DAY),), T - 30 * H + 7 * DAY),
        ([T - 2 * H], (Cap(2, 7 * DAY),), T),
        ([T - 2 * H], (Cap(2, 7 * DAY), Cap(1, DAY)), T + 22 * H),
        ([T - 6 * DAY, T - 2 * H], (Cap(1, DAY), Cap(2, 7 * DAY)), T + DAY),
    ],
    ids=[
        "nothing-sent",
        "long-ago",
        "exactly-a-period",
        "two-hours-ago",
        "two-a-week-full",
        "two-a-week-room",
        "both-caps-daily-binds",
        "weekly-binds-after-daily",
    ],
)
def test_next_free(used: list[datetime], caps: tuple[Cap, ...], expected: datetime) -> None:
    assert next_free(used, caps, at=T) == expected
    assert fits(used, caps, at=T) == (expected == T)


@pytest.mark.parametrize(
    ("text", "value", "name"),
    [("high", 3, "high"), ("Normal", 2, "normal"), (" low ", 1, "low")],
)
def test_priorities(text: str, value: int, name: str) -> None:
    assert parse_priority(text) == value
    assert priority_name(value) == name


@pytest.mark.parametrize("text", ["urgent", "", None, 3])
def test_bad_priority_names_the_choices(text: object) -> None:
    with pytest.raises(ValueError, match="use high, normal or low"):
        parse_priority(text)


def _decide(candidates, *, used=(), upcoming=(), caps=DAILY):  # type: ignore[no-untyped-def]
    return decide(candidates, used=list(used), upcoming=list(upcoming), caps=caps, zone=UTC, now=T)


def test_one_email_with_room_goes() -> None:
    decision = _decide([Candidate(1, 2, T)])
    assert (decision.send, decision.defer, decision.skip) == ([1], [], [])


def test_of_two_due_together_the_higher_priority_goes_and_the_drip_moves_into_its_window() -> None:
    drip = Candidate(1, 2, T - H, window=WINDOW)
    campaign = Candidate(2, 3, T)
    decision = _decide([drip, campaign])
    assert decision.send == [2]
    [moved] = decision.defer
    assert (moved.id, moved.until) == (1, T + DAY)  # 09:00 next day is inside 08-11
    assert "marketing cap 1/1d reached" in moved.reason


def test_equal_priorities_go_oldest_first() -> None:
    decision = _decide([Candidate(1, 2, T), Candidate(2, 2, T - H)])
    assert decision.send == [2]
    assert [d.id for d in decision.defer] == [1]


def test_a_moved_drip_lands_at_the_next_window_opening() -> None:
    drip = Candidate(1, 2, T, window=SendWindow(time(14, 0), time(16, 0)))
    decision = _decide([drip], used=[T - 2 * H])
    assert decision.defer[0].until == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_a_moved_drip_in_the_subscribers_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    drip = Candidate(1, 2, T, window=WINDOW)
    decision = decide([drip], used=[T - 2 * H], upcoming=[], caps=DAILY, zone=tokyo, now=T)
    # free at 2026-12-02 07:00 UTC = 16:00 Tokyo: next window 08:00 Tokyo on the 3rd
    assert decision.defer[0].until == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)


def test_a_campaign_moved_past_its_staleness_limit_is_skipped_with_the_reason() -> None:
    campaign = Candidate(1, 2, T, stale_at=T + 6 * H)
    decision = _decide([campaign], used=[T - 2 * H])
    assert decision.send == decision.defer == []
    assert decision.skip[0].id == 1
    assert "NEWSLETTER_CAMPAIGN_STALE_HOURS" in decision.skip[0].reason


def test_stale_limit_is_the_due_time_plus_the_hours() -> None:
    assert stale_limit(T, stale_hours=6) == T + 6 * H
    assert stale_limit(T, stale_hours=0.5) == T + H / 2


def test_longest_period_of_the_caps() -> None:
    assert longest((Cap(1, DAY), Cap(2, 7 * DAY), Cap(1, H))) == 7 * DAY
    assert longest(()) == timedelta()


def test_a_campaign_moved_to_exactly_its_staleness_limit_still_waits() -> None:
    campaign = Candidate(1, 2, T, stale_at=T + 22 * H)
    decision = _decide([campaign], used=[T - 2 * H])
    assert (decision.skip, decision.defer[0].until) == ([], T + 22 * H)


def test_a_campaign_moved_within_its_staleness_limit_waits() -> None:
    campaign = Candidate(1, 2, T, stale_at=T + 30 * H)
    decision = _decide([campaign], used=[T - 2 * H])
    assert decision.defer[0].until == T + 22 * H


def test_a_lower_email_gives_way_to_a_higher_one_due_soon() -> None:
    rival = Upcoming(T + 5 * H, 3, "campaign launch")
    decision = _decide([Candidate(1, 2, T, window=WINDOW)], upcoming=[rival])
    assert decision.send == []
    [moved] = decision.defer
    # the launch takes 14:00 on the 1st; 24 h later the window has closed: 08:00 on the 3rd
    assert moved.until == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert "gives way to campaign launch (high priority)" in moved.reason


def test_an_email_gives_way_to_a_higher_one_due_right_now() -> None:
    # a queued row of another batch, due now (claims pass max(due, now))
    rival = Upcoming(T, 3, "campaign launch")
    decision = _decide([Candidate(1, 2, T)], upcoming=[rival])
    assert decision.send == []
    [moved] = decision.defer
    assert moved.until == T + DAY
    assert moved.reason == "gives way to campaign launch (high priority) due 2026-12-01 09:00 UTC"


def test_an_email_does_not_give_way_to_an_equal_or_lower_one_or_one_far_away() -> None:
    upcoming = [Upcoming(T + 5 * H, 2), Upcoming(T + 2 * H, 1), Upcoming(T + 25 * H, 3)]
    assert _decide([Candidate(1, 2, T)], upcoming=upcoming).send == [1]


def test_exempt_steps_go_even_when_the_cap_is_full_and_still_count() -> None:
    welcome = Candidate(1, 2, T, exempt=True)
    tip = Candidate(2, 3, T)
    decision = _decide([welcome, tip], used=[T - H])
    assert decision.send == [1]
    assert [d.id for d in decision.defer] == [2]


def test_an_exempt_welcome_is_decided_first_and_takes_the_slot_of_a_higher_older_email() -> None:
    welcome = Candidate(1, 1, T, exempt=True)
    tip = Candidate(2, 3, T - H)
    decision = _decide([tip, welcome])
    assert decision.send == [1]
    assert [d.id for d in decision.defer] == [2]


def test_no_caps_sends_everything() -> None:
    decision = _decide([Candidate(1, 1, T), Candidate(2, 2, T)], used=[T - H], caps=())
    assert sorted(decision.send) == [1, 2]


def test_two_a_week_sends_two_then_moves_the_third() -> None:
    caps = (Cap(2, 7 * DAY),)
    decision = _decide([Candidate(1, 2, T), Candidate(2, 2, T), Candidate(3, 2, T)], caps=caps)
    assert decision.send == [1, 2]
    assert decision.defer[0].until == T + 7 * DAY


def test_a_pause_drips_day_holds_a_drip_whatever_the_cap_and_moves_it_to_the_next_window() -> None:
    drip = Candidate(1, 2, T, window=WINDOW, drip=True)
    hold = Hold(T + 8 * H, "campaign sale")  # 17:00 the same local day
    for caps in (DAILY, ()):
        decision = decide([drip], used=[], upcoming=[], caps=caps, zone=UTC, now=T, holds=[hold])
        assert (decision.send, decision.skip) == ([], [])
        [moved] = decision.defer
        assert (moved.id, moved.until) == (1, datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
        assert moved.reason == "campaign sale (--pause-drips) claims the local day 2026-12-01"


def test_a_hold_spares_campaigns_the_exempt_welcome_and_other_days() -> None:
    campaign = Candidate(1, 2, T)
    welcome = Candidate(2, 2, T, exempt=True, drip=True)
    held = [Hold(T, "campaign sale")]
    decision = decide(
        [campaign, welcome], used=[], upcoming=[], caps=(), zone=UTC, now=T, holds=held
    )
    assert sorted(decision.send) == [1, 2]
    tomorrow = [Hold(T + DAY - 9 * H)]  # 00:00 on the 2nd: another local day
    drip = Candidate(3, 2, T, drip=True)
    decision = decide([drip], used=[], upcoming=[], caps=(), zone=UTC, now=T, holds=tomorrow)
    assert decision.send == [3]


def test_a_hold_is_the_subscribers_local_day() -> None:
    # 23:30 UTC on the 30th is 08:30 on the 1st in Tokyo: the campaign at 09:00 UTC on the
    # 1st (18:00 Tokyo) claims that Tokyo day.
    tokyo = ZoneInfo("Asia/Tokyo")
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    drip = Candidate(1, 2, now, window=WINDOW, drip=True)
    decision = decide([drip], used=[], upcoming=[], caps=(), zone=tokyo, now=now, holds=[Hold(T)])
    [moved] = decision.defer
    assert moved.until == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 08:00 Tokyo on the 2nd
    assert moved.reason == "a campaign (--pause-drips) claims the local day 2026-12-01"
    assert decide([drip], used=[], upcoming=[], caps=(), zone=UTC, now=now, holds=[Hold(T)]).send


def test_two_campaigns_the_same_day_name_the_first() -> None:
    drip = Candidate(1, 2, T, drip=True)
    holds = [Hold(T + 5 * H, "campaign late"), Hold(T + H, "campaign early")]
    decision = decide([drip], used=[], upcoming=[], caps=(), zone=UTC, now=T, holds=holds)
    assert decision.defer[0].reason.startswith("campaign early ")


def test_after_held_days_skips_every_held_day_in_a_row() -> None:
    days = {T.date(), (T + DAY).date()}
    assert after_held_days(T, days, UTC, WINDOW) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert after_held_days(T, days, UTC, None) == datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    assert after_held_days(T, set(), UTC, WINDOW) == T
    late = SendWindow(time(14, 0), time(16, 0))
    assert after_held_days(T, {T.date()}, UTC, late) == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def _at_once(candidate, *, used=(), upcoming=(), caps=DAILY, holds=()):  # type: ignore[no-untyped-def]
    return sends_at_once(
        candidate, used=list(used), upcoming=list(upcoming), caps=caps, now=T, holds=list(holds)
    )


DRIP = Candidate(1, 2, T, window=WINDOW, drip=True)


@pytest.mark.parametrize(
    ("candidate", "kwargs"),
    [
        (DRIP, {}),
        (DRIP, {"used": [T - DAY]}),  # counted only while inside the period
        (DRIP, {"used": [T - 8 * DAY, T - DAY], "caps": (Cap(2, 7 * DAY),)}),
        (DRIP, {"used": [T - 7 * DAY], "caps": (*DAILY, Cap(1, 7 * DAY))}),
        (DRIP, {"used": [T - H], "caps": ()}),
        (DRIP, {"upcoming": [Upcoming(T, 3)], "caps": ()}),  # nothing to give way for
        (DRIP, {"upcoming": [Upcoming(T + H, 2), Upcoming(T + H, 1)]}),  # equal or lower
        (DRIP, {"upcoming": [Upcoming(T - H, 3)]}),  # already past
        (Candidate(1, 2, T), {"holds": [Hold(T)]}),  # a campaign is not held
        (Candidate(1, 2, T, drip=True, exempt=True), {"holds": [Hold(T)], "used": [T]}),
    ],
    ids=[
        "nothing-used",
        "used-a-period-ago",
        "room-for-two",
        "used-a-week-ago-two-caps",
        "no-cap",
        "no-cap-higher-rival",
        "equal-or-lower-rivals",
        "past-rival",
        "campaign-on-held-day",
        "exempt-welcome",
    ],
)
def test_sends_at_once_in_the_common_cases(candidate: Candidate, kwargs: dict[str, object]) -> None:
    assert _at_once(candidate, **kwargs) is True
    assert _decide_with(candidate, **kwargs).send == [candidate.id]


@pytest.mark.parametrize(
    ("candidate", "kwargs"),
    [
        (DRIP, {"used": [T - DAY + timedelta(seconds=1)]}),
        (DRIP, {"used": [T + H]}),
        (DRIP, {"used": [T - 2 * DAY], "caps": (*DAILY, Cap(1, 7 * DAY))}),
        (DRIP, {"upcoming": [Upcoming(T, 3)]}),
        (DRIP, {"upcoming": [Upcoming(T + 5 * DAY, 3)]}),  # decide sends: not the short-cut
        (DRIP, {"holds": [Hold(T + 2 * DAY)]}),  # another day: decide sends
    ],
    ids=[
        "used-inside-the-period",
        "used-later",
        "used-inside-the-longer-cap",
        "higher-rival-now",
        "higher-rival-far",
        "drip-with-a-hold",
    ],
)
def test_sends_at_once_leaves_the_rest_to_decide(
    candidate: Candidate, kwargs: dict[str, object]
) -> None:
    assert _at_once(candidate, **kwargs) is False


def _decide_with(candidate, *, used=(), upcoming=(), caps=DAILY, holds=()):  # type: ignore[no-untyped-def]
    return decide(
        [candidate],
        used=list(used),
        upcoming=list(upcoming),
        caps=caps,
        zone=UTC,
        now=T,
        holds=list(holds),
    )


_instants = st.integers(min_value=-10 * 24, max_value=10 * 24).map(lambda h: T + h * H)
_caps = st.lists(
    st.builds(Cap, st.integers(1, 3), st.integers(1, 10 * 24).map(lambda h: h * H)), max_size=2
)


@settings(max_examples=400, deadline=None)
@given(
    priority=st.integers(1, 3),
    exempt=st.booleans(),
    drip=st.booleans(),
    window=st.sampled_from([None, WINDOW]),
    used=st.lists(_instants, max_size=3),
    upcoming=st.lists(st.builds(Upcoming, _instants, st.integers(1, 3)), max_size=3),
    caps=_caps,
    holds=st.lists(st.builds(Hold, _instants), max_size=2),
)
def test_sends_at_once_agrees_with_decide(
    priority: int,
    exempt: bool,
    drip: bool,
    window: SendWindow | None,
    used: list[datetime],
    upcoming: list[Upcoming],
    caps: list[Cap],
    holds: list[Hold],
) -> None:
    """Whenever the claim's short-cut sends a lone candidate, ``decide`` sends it too."""
    candidate = Candidate(7, priority, T, exempt=exempt, window=window, drip=drip)
    kwargs = {"used": used, "upcoming": upcoming, "caps": tuple(caps), "holds": holds}
    if _at_once(candidate, **kwargs):
        decision = _decide_with(candidate, **kwargs)
        assert (decision.send, decision.defer, decision.skip) == ([7], [], [])


TOPICS = Topics(
    (
        Topic("drip", "The drip", sequences=("basics",)),
        Topic("ql", "About the QL", tags=("ql",)),
        Topic("offers", "Offers"),
    )
)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"campaign_topic": "offers", "item_topic": "ql"}, "offers"),
        ({"item_topic": "ql", "sequence": "basics"}, "ql"),
        ({"sequence": "basics", "tags": ["ql"]}, "drip"),
        ({"sequence": "other", "tags": ["QL"]}, "ql"),
        ({"tags": ["other"]}, None),
    ],
    ids=["campaign-wins", "item-next", "sequence-next", "tags-last", "none"],
)
def test_topic_for(kwargs: dict[str, object], expected: str | None) -> None:
    assert TOPICS.topic_for(**kwargs) == expected  # type: ignore[arg-type]


GOOD = """topics:
  - name: drip
    description: Tips every few days.
    sequences: [basics]
  - name: offers
    description: Offers.
    tags: [Sale]
"""


@pytest.mark.parametrize("text", ["", "# no topics yet\n", "topics:\n", "topics: []\n"])
def test_an_empty_topics_file_is_no_topics(text: str) -> None:
    assert parse_topics(text, "topics.yaml", sequences=[]) == Topics()


def test_parse_topics() -> None:
    topics = parse_topics(
        GOOD, "topics.yaml", sequences=["basics"], item_topics=[("c/x", "offers")]
    )
    assert topics.names == ("drip", "offers")
    assert topics.topics[1].tags == ("sale",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "one key, topics"),
        ("topics: []\nextra: 1\n", "one key, topics"),
        ("topics:\n  - tips\n", "each topic needs name and description"),
        ("topics:\n  - name: a\n    description: x\n    tags: ['  ']\n", "list of words"),
        ("topics:\n  - name: a\n    description: x\n    tags: [1]\n", "list of words"),
        ("topics: {}\n", "topics must be a list"),
        ("topics:\n  - name: Bad Name\n    description: x\n", "bad topic name"),
        ("topics:\n  - name: a\n", "needs a description"),
        ("topics:\n  - name: a\n    description: x\n  - name: a\n    description: y\n", "twice"),
        (
            "topics:\n  - name: a\n    description: x\n    sequences: [nope]\n",
            r"covers sequence 'nope', which does not exist \(known: basics\)",
        ),
        ("topics:\n  - name: a\n    description: x\n    tags: a\n", "list of words"),
        ("topics:\n  - name: a\n    description: x\n    colour: red\n", "unknown key"),
    ],
    ids=[
        "not-mapping",
        "extra-key",
        "entry-not-mapping",
        "blank-tag",
        "number-tag",
        "not-list",
        "bad-name",
        "no-description",
        "twice",
        "no-sequence",
        "tags-not-list",
        "unknown-key",
    ],
)
def test_bad_topics_files_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        parse_topics(text, "topics.yaml", sequences=["basics"])


def test_an_item_naming_an_unknown_topic_is_an_error() -> None:
    with pytest.raises(ContentError, match=r"names topic 'nope', .* \(known: drip, offers\)"):
        parse_topics(GOOD, "topics.yaml", sequences=["basics"], item_topics=[("tips/a", "nope")])
    with pytest.raises(ContentError, match=r"sequence 'x', which does not exist \(known: none\)"):
        parse_topics(GOOD.replace("[basics]", "[x]"), "topics.yaml", sequences=[])
    with pytest.raises(ContentError, match=r"names topic 'nope', .* \(known: none\)"):
        parse_topics("topics: []\n", "topics.yaml", sequences=[], item_topics=[("c/x", "nope")])
