"""The pure forecast behind ``subscribers plan`` and ``sequence simulate``: drip steps in
their window after the previous send, the cap, priorities, ``--pause-drips`` holds, topic
opt-outs, staleness and the horizon, with exact expected lists."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from newsletter.attention.cap import Cap
from newsletter.attention.decide import Hold
from newsletter.attention.forecast import DripState, OneOff, PlannedEmail, forecast
from newsletter.content.model import Rotation, SendWindow, Sequence, Step

D, H = timedelta(days=1), timedelta(hours=1)
T = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DAILY = (Cap(1, D),)
WINDOW = SendWindow(time(8), time(11))
STEPS = (Step("system/welcome", timedelta()), Step("tips/a", 2 * D), Step("tips/b", 3 * D))
SEQ = Sequence("basics", "", "on confirm", WINDOW, STEPS, then=Rotation(7 * D, ("tips",)))
POOL = {"tips": ["tips/a", "tips/b", "tips/c", "tips/d"]}
SALE = OneOff("campaign sale", "campaigns/x", T + 2 * D + 6 * H, 2, None, None, pause_drips=True)


def rows(out: list[PlannedEmail]) -> list[tuple[str, str, str, str]]:
    return [(f"{p.at:%m-%d %H:%M}", p.item_id, p.status, p.note) for p in out]


def run(**kwargs: object) -> list[tuple[str, str, str, str]]:
    args: dict[str, object] = {
        "now": T,
        "until": T + 10 * D,
        "zone": UTC,
        "caps": DAILY,
        "used": [],
        "had": set(),
        "drips": [DripState(SEQ, 2, T)],
        "one_offs": [],
        "pool": POOL,
    }
    args.update(kwargs)
    return rows(forecast(**args))  # type: ignore[arg-type]


def test_one_sequence_steps_then_rotation_until_the_horizon() -> None:
    assert run(until=T + 19 * D) == [
        ("12-01 08:00", "system/welcome", "send", ""),
        ("12-03 08:00", "tips/a", "send", ""),
        ("12-06 08:00", "tips/b", "send", ""),
        ("12-13 08:00", "tips/c", "send", ""),
    ]
    sent = forecast(
        now=T, until=T + D, zone=UTC, caps=DAILY, used=[], had=set(),
        drips=[DripState(SEQ, 2, T)], one_offs=[], pool=POOL,
    )  # fmt: skip
    assert [(p.source, p.at) for p in sent] == [("sequence basics", T)]


def test_rotations_left_and_items_had_end_the_sequence() -> None:
    assert run(drips=[DripState(SEQ, 2, T, rotations_left=1)], until=T + 60 * D)[-2:] == [
        ("12-06 08:00", "tips/b", "send", ""),
        ("12-13 08:00", "tips/c", "send", ""),
    ]
    assert run(drips=[DripState(SEQ, 2, T, rotations_left=2)], until=T + 60 * D)[-2:] == [
        ("12-13 08:00", "tips/c", "send", ""),
        ("12-20 08:00", "tips/d", "send", ""),
    ]
    assert run(drips=[DripState(SEQ, 2, T, rotations_left=0)], until=T + 60 * D)[-1] == (
        "12-06 08:00",
        "tips/b",
        "send",
        "",
    )
    assert run(had={"tips/a", "tips/c", "tips/d"}, until=T + 60 * D) == [
        ("12-01 08:00", "system/welcome", "send", ""),
        ("12-04 08:00", "tips/b", "send", ""),  # tips/b's own after: 3d
    ]
    assert run(drips=[DripState(SEQ, 2, None)]) == []


def test_the_callers_facts_are_left_as_they_were() -> None:
    had: set[str] = set()
    used: list[datetime] = []
    assert len(run(had=had, used=used)) == 3
    assert (had, used) == (set(), [])


def test_a_later_step_is_placed_in_its_window_and_a_planned_row_keeps_its_time() -> None:
    later = DripState(SEQ, 2, T + 4 * H, last_item_id="system/welcome", position=1)
    assert run(drips=[later])[0] == ("12-02 08:00", "tips/a", "send", "")
    planned = DripState(
        SEQ, 2, T + 4 * H, last_item_id="system/welcome", position=1,
        planned_item="tips/a", planned_step=1,
    )  # fmt: skip
    assert run(drips=[planned])[0] == ("12-01 12:00", "tips/a", "send", "")


def test_the_welcome_is_exempt_from_a_full_cap_and_a_later_step_is_not() -> None:
    assert run(used=[T - H])[:2] == [
        ("12-01 08:00", "system/welcome", "send", ""),
        ("12-03 08:00", "tips/a", "send", ""),
    ]
    slow = Sequence("slow", "", "", WINDOW, (Step("tips/a", H), Step("tips/b", D)))
    assert run(drips=[DripState(slow, 2, T + H)], used=[T]) == [
        (
            "12-02 08:00",
            "tips/a",
            "send",
            "moved from 12-01 09:00 UTC: marketing cap 1/1d reached".replace("12-01", "2026-12-01"),
        ),
        ("12-03 08:00", "tips/b", "send", ""),
    ]


def test_a_high_priority_campaign_takes_the_day_and_the_drip_moves() -> None:
    launch = OneOff("campaign launch", "campaigns/x", T + 2 * D, 3, T + 3 * D)
    assert run(one_offs=[launch])[1:3] == [
        ("12-03 08:00", "campaigns/x", "send", ""),
        (
            "12-04 08:00",
            "tips/a",
            "send",
            "moved from 2026-12-03 08:00 UTC: marketing cap 1/1d reached",
        ),
    ]


def test_a_campaign_held_past_its_staleness_limit_is_skipped() -> None:
    stale = OneOff("campaign late", "campaigns/x", T + 2 * H, 2, T + 3 * H)
    out = run(one_offs=[stale], until=T + D)
    assert out[0] == ("12-01 08:00", "system/welcome", "send", "")
    assert out[1][:3] == ("12-01 10:00", "campaigns/x", "skip")
    assert "NEWSLETTER_CAMPAIGN_STALE_HOURS" in out[1][3]
    assert len(out) == 2


HELD = "campaign sale (--pause-drips) claims the local day 2026-12-03"


def test_a_pause_drips_campaign_holds_the_drip_on_its_day_whatever_the_cap() -> None:
    moved = f"moved from 2026-12-03 08:00 UTC: {HELD}"
    assert run(one_offs=[SALE], caps=())[:4] == [
        ("12-01 08:00", "system/welcome", "send", ""),
        ("12-03 14:00", "campaigns/x", "send", ""),
        ("12-04 08:00", "tips/a", "send", moved),
        ("12-07 08:00", "tips/b", "send", ""),
    ]
    # With 1/24h the campaign at 14:00 also keeps 08:00 the next day free.
    assert run(one_offs=[SALE])[2] == (
        "12-05 08:00",
        "tips/a",
        "send",
        f"{moved}; moved from 2026-12-04 08:00 UTC: marketing cap 1/1d reached",
    )
    plain = OneOff("campaign sale", "campaigns/x", T + 2 * D + 6 * H, 2, None)
    assert run(one_offs=[plain], caps=())[1:3] == [
        ("12-03 08:00", "tips/a", "send", ""),
        ("12-03 14:00", "campaigns/x", "send", ""),
    ]


def test_a_sent_pause_drips_campaign_keeps_holding_its_day() -> None:
    early = OneOff("campaign sale", "campaigns/x", T + 2 * D - 2 * H, 2, None, pause_drips=True)
    assert run(one_offs=[early], caps=())[1:3] == [
        ("12-03 06:00", "campaigns/x", "send", ""),
        ("12-04 08:00", "tips/a", "send", f"moved from 2026-12-03 08:00 UTC: {HELD}"),
    ]
    assert run(holds=[Hold(T + 2 * D + 5 * H, "campaign sale")], caps=())[1] == (
        "12-04 08:00",
        "tips/a",
        "send",
        f"moved from 2026-12-03 08:00 UTC: {HELD}",
    )


def test_a_hold_is_on_the_subscribers_local_day() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")

    def state() -> DripState:  # forecast moves the state on: a fresh one per run
        return DripState(SEQ, 2, T, last_item_id="system/welcome", position=1)

    # 14:00 UTC on the 1st is 23:00 on the 1st in Tokyo; the drip's window opens at 08:00
    # Tokyo on the 2nd (23:00 UTC on the 1st): another local day there, so it is not held.
    late = OneOff("campaign sale", "campaigns/x", T + 6 * H, 2, None, pause_drips=True)
    out = run(drips=[state()], one_offs=[late], caps=(), zone=tokyo, until=T + 2 * D)
    assert out == [
        ("12-01 14:00", "campaigns/x", "send", ""),
        ("12-01 23:00", "tips/a", "send", ""),
    ]
    # The same campaign an hour later (00:00 on the 2nd in Tokyo) holds that Tokyo day.
    night = OneOff("campaign sale", "campaigns/x", T + 7 * H, 2, None, pause_drips=True)
    out = run(drips=[state()], one_offs=[night], caps=(), zone=tokyo, until=T + 2 * D)
    assert out[1] == (
        "12-02 23:00",
        "tips/a",
        "send",
        "moved from 2026-12-01 23:00 UTC: campaign sale (--pause-drips) claims the local day "
        "2026-12-02",
    )


def test_an_opted_out_item_is_skipped_and_an_opted_out_campaign_holds_nothing() -> None:
    def off(item: str, sequence: str | None, topic: str | None) -> str | None:
        if item == "tips/b" and sequence == "basics":
            return "tips"
        return "offers" if topic == "offers" else None

    sale = OneOff(
        "campaign sale", "campaigns/x", T + 2 * D + 6 * H, 2, None, "offers", pause_drips=True
    )
    assert run(one_offs=[sale], caps=(), opted_out=off, until=T + 13 * D) == [
        ("12-01 08:00", "system/welcome", "send", ""),
        ("12-03 08:00", "tips/a", "send", ""),
        ("12-03 14:00", "campaigns/x", "skip", "opted out of topic 'offers'"),
        ("12-06 08:00", "tips/b", "skip", "opted out of topic 'tips'"),
        ("12-13 08:00", "tips/c", "send", ""),
    ]


def test_a_one_off_due_before_now_goes_now_and_nothing_after_until() -> None:
    past = OneOff("campaign sale", "campaigns/x", T - D, 2, None)
    assert run(one_offs=[past], drips=[], caps=()) == [("12-01 08:00", "campaigns/x", "send", "")]
    assert run(one_offs=[past], drips=[], until=T) == []


def test_a_planned_row_is_sent_once_and_the_sequence_goes_on() -> None:
    def planned() -> DripState:
        return DripState(
            SEQ, 2, T + 4 * H, last_item_id="system/welcome", position=1,
            planned_item="tips/a", planned_step=1,
        )  # fmt: skip

    expected = [
        ("12-01 12:00", "tips/a", "send", ""),
        ("12-05 08:00", "tips/b", "send", ""),  # 3 days after 12:00 is past the window
    ]
    assert run(drips=[planned()]) == expected
    # the ledger row's item is in ``had`` (as ``subscribers plan`` passes it): still sent
    assert run(drips=[planned()], had={"system/welcome", "tips/a"}) == expected


def test_a_queued_welcome_is_exempt() -> None:
    welcome = DripState(SEQ, 2, T, planned_item="system/welcome", planned_step=0)
    assert run(drips=[welcome], used=[T - H])[0] == ("12-01 08:00", "system/welcome", "send", "")


def test_the_state_ends_with_nothing_due() -> None:
    for state in (DripState(SEQ, 2, T, rotations_left=0), DripState(SEQ, 2, T, rotations_left=1)):
        run(drips=[state], until=T + 60 * D)
        assert state.due_at is None


def test_rotation_kinds_take_turns_after_the_last_item_sent() -> None:
    seq = Sequence("mix", "", "", WINDOW, STEPS, then=Rotation(7 * D, ("tips", "stories")))
    pool = {"tips": ["tips/a", "tips/b", "tips/c"], "stories": ["stories/x", "stories/y"]}
    out = run(drips=[DripState(seq, 2, T)], pool=pool, until=T + 30 * D)
    assert [item for _at, item, _s, _n in out] == [
        "system/welcome",
        "tips/a",
        "tips/b",
        "stories/x",
        "tips/c",
        "stories/y",
    ]


def test_two_due_together_under_two_a_day_both_go() -> None:
    launch = OneOff("campaign launch", "campaigns/x", T + 2 * D, 3, None)
    out = run(one_offs=[launch], caps=(Cap(2, D),))
    assert out[1:3] == [
        ("12-03 08:00", "campaigns/x", "send", ""),
        ("12-03 08:00", "tips/a", "send", ""),
    ]


def test_equal_campaigns_go_oldest_first_by_their_first_due_time() -> None:
    later = OneOff("campaign b", "campaigns/b", T, 2, None)
    older = OneOff("campaign a", "campaigns/a", T - H, 2, None)
    out = run(one_offs=[later, older], drips=[], until=T + H)
    assert out == [("12-01 08:00", "campaigns/a", "send", "")]


def test_a_drip_gives_way_to_a_higher_campaign_later_that_day() -> None:
    launch = OneOff("campaign launch", "campaigns/x", T + 2 * D + 3 * H, 3, None)
    out = run(one_offs=[launch])
    assert out[1:3] == [
        ("12-03 11:00", "campaigns/x", "send", ""),
        (
            "12-05 08:00",
            "tips/a",
            "send",
            "moved from 2026-12-03 08:00 UTC: gives way to campaign launch (high priority) "
            "due 2026-12-03 11:00 UTC",
        ),
    ]


def test_an_enrollment_at_its_end_plans_nothing() -> None:
    plain = Sequence("plain", "", "", WINDOW, STEPS)
    done = DripState(plain, 2, T, last_item_id="tips/b", position=3)
    assert run(drips=[done], had={"system/welcome", "tips/a", "tips/b"}) == []
    no_more = DripState(SEQ, 2, T, last_item_id="tips/b", position=3, rotations_left=0)
    assert run(drips=[no_more], had={"system/welcome", "tips/a", "tips/b"}) == []
    one_more = DripState(SEQ, 2, T, last_item_id="tips/b", position=3, rotations_left=1)
    assert run(drips=[one_more], had={"system/welcome", "tips/a", "tips/b"}, until=T + 30 * D) == [
        ("12-01 08:00", "tips/c", "send", "")
    ]


def test_a_plan_stops_at_ten_thousand_events() -> None:
    """The safety stop: a sequence rotating daily through 10,005 items for 55 years is
    planned as its first 10,000 emails (a real 90-day plan has a few dozen)."""
    items = [f"tips/t{i:05d}" for i in range(10_005)]
    every_day = SendWindow(time(0), time(23, 59))
    first = (Step(items[0], timedelta()),)
    sequence = Sequence("big", "", "on confirm", every_day, first, then=Rotation(D, ("tips",)))
    out = forecast(
        now=T, until=T + 20_000 * D, zone=UTC, caps=(), used=[], had=set(),
        drips=[DripState(sequence, 2, T)], one_offs=[], pool={"tips": items},
    )  # fmt: skip
    assert len(out) == 10_000
    assert [p.item_id for p in out] == items[:10_000]
    assert out[-1].at == T + 9_999 * D
