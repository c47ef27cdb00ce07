"""Choosing the next item: steps in order, sequence edits, rotation (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.content.model import Rotation, SendWindow, Sequence, Step
from newsletter.drip.planning import (
    ROTATION_STEP,
    NextSend,
    choose_next,
    next_rotation_item,
    resume_index,
    rotation_pool,
)
from newsletter.drip.simulation import simulate

DAY = timedelta(days=1)
POOL = rotation_pool(
    [
        "tips/a",
        "tips/b",
        "tips/c",
        "testimonials/x",
        "tutorials/t1",
        "campaigns/sale",
        "system/welcome",
    ],
    ["tips", "testimonials", "tutorials"],
)


def sequence(*items: str, then: Rotation | None = None) -> Sequence:
    steps = tuple(Step(item, 0 * DAY if i == 0 else 3 * DAY) for i, item in enumerate(items))
    return Sequence("s", "", "on_confirm", SendWindow(time(8), time(11)), steps, then)


BASIC = sequence("system/welcome", "tips/a", "tips/b")
ROTATING = sequence(
    "system/welcome", "tips/a", then=Rotation(4 * DAY, ("tips", "testimonials", "tutorials"))
)


@pytest.mark.parametrize(
    ("seq", "last", "position", "had", "expected"),
    [
        pytest.param(BASIC, None, 0, set(), ("system/welcome", 0), id="first-step"),
        pytest.param(BASIC, "system/welcome", 1, {"system/welcome"}, ("tips/a", 1), id="second"),
        pytest.param(BASIC, "tips/b", 3, {"tips/b"}, None, id="done-no-rotation"),
        # A step was inserted before the subscriber's last item: they continue forward.
        pytest.param(
            sequence("system/welcome", "tips/new", "tips/a", "tips/b"),
            "tips/a",
            2,
            {"system/welcome", "tips/a"},
            ("tips/b", 3),
            id="inserted-before-is-skipped",
        ),
        # Steps reordered: the next one after the last item in the new order.
        pytest.param(
            sequence("system/welcome", "tips/b", "tips/a", "tips/c"),
            "tips/b",
            2,
            {"system/welcome", "tips/a", "tips/b"},
            ("tips/c", 3),
            id="reordered-never-resends",
        ),
        # The last item was removed from the sequence: continue at the stored position.
        pytest.param(
            sequence("system/welcome", "tips/b", "tips/c"),
            "tips/a",
            2,
            {"system/welcome", "tips/a"},
            ("tips/c", 2),
            id="last-item-removed",
        ),
        # An item already had (e.g. through a campaign) is passed over.
        pytest.param(
            BASIC, "system/welcome", 1, {"system/welcome", "tips/a"}, ("tips/b", 2), id="had"
        ),
        pytest.param(
            sequence("system/welcome"),
            "tips/zzz",
            9,
            {"tips/zzz"},
            None,
            id="position-past-the-end",
        ),
    ],
)
def test_choose_next_step(
    seq: Sequence,
    last: str | None,
    position: int,
    had: set[str],
    expected: tuple[str, int] | None,
) -> None:
    found = choose_next(seq, last_item_id=last, position=position, had=had, pool=POOL)
    assert (None if found is None else (found.item_id, found.step)) == expected


@pytest.mark.parametrize(
    ("last", "had", "expected"),
    [
        pytest.param("tips/a", {"tips/a"}, "testimonials/x", id="after-a-tip-a-testimonial"),
        pytest.param("testimonials/x", {"tips/a", "testimonials/x"}, "tutorials/t1", id="turns"),
        pytest.param("tutorials/t1", {"tips/a", "tutorials/t1"}, "tips/b", id="wraps-to-tips"),
        pytest.param(
            "tips/b", {"tips/a", "tips/b", "testimonials/x"}, "tutorials/t1", id="kind-exhausted"
        ),
        pytest.param(
            "tips/c",
            {"tips/a", "tips/b", "tips/c", "testimonials/x", "tutorials/t1"},
            None,
            id="nothing-left-done",
        ),
    ],
)
def test_rotation_takes_turns_and_never_repeats(
    last: str, had: set[str], expected: str | None
) -> None:
    found = choose_next(ROTATING, last_item_id=last, position=2, had=had, pool=POOL)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.item_id, found.step, found.delay) == (expected, ROTATION_STEP, 4 * DAY)


def test_rotation_pool_keeps_only_the_named_kinds_in_id_order() -> None:
    assert POOL == {
        "tips": ["tips/a", "tips/b", "tips/c"],
        "testimonials": ["testimonials/x"],
        "tutorials": ["tutorials/t1"],
    }


def test_simulate_lists_steps_then_rotation_at_window_times() -> None:
    zone = ZoneInfo("Europe/Berlin")
    signup = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # 14:00 local
    sends = simulate(ROTATING, POOL, signup=signup, zone=zone, rotations=2)
    assert [(s.item_id, s.step, s.at) for s in sends] == [
        ("system/welcome", 0, signup),
        ("tips/a", 1, datetime(2026, 7, 5, 6, 0, tzinfo=UTC)),  # +3d is 14:00: next morning
        ("testimonials/x", ROTATION_STEP, datetime(2026, 7, 9, 6, 0, tzinfo=UTC)),
        ("tutorials/t1", ROTATION_STEP, datetime(2026, 7, 13, 6, 0, tzinfo=UTC)),
    ]


EDITED = sequence("system/welcome", "tips/new", "tips/a", "tips/b")


@pytest.mark.parametrize(
    ("seq", "last", "position", "expected"),
    [
        # the stored position is stale (lower): the last item's place wins
        pytest.param(EDITED, "tips/a", 1, 3, id="last-item-beats-a-stale-position"),
        pytest.param(EDITED, "tips/b", 0, 4, id="last-item-is-the-last-step"),
        pytest.param(EDITED, "system/welcome", 3, 1, id="last-item-beats-a-higher-position"),
        pytest.param(EDITED, None, 2, 2, id="no-last-item-uses-position"),
        pytest.param(EDITED, "tips/gone", 2, 2, id="removed-item-uses-position"),
        pytest.param(EDITED, "tips/gone", 9, 4, id="position-clamped-to-length"),
        pytest.param(EDITED, None, -3, 0, id="negative-position-clamped-to-zero"),
    ],
)
def test_resume_index(seq: Sequence, last: str | None, position: int, expected: int) -> None:
    assert resume_index(seq, last_item_id=last, position=position) == expected


def test_an_inserted_step_is_skipped_even_when_the_position_is_stale() -> None:
    """Without the last-item lookup, position 1 would send the inserted ``tips/new``."""
    found = choose_next(
        EDITED, last_item_id="tips/a", position=1, had={"system/welcome", "tips/a"}, pool=POOL
    )
    assert found == NextSend("tips/b", 3, 3 * DAY, 4)


@pytest.mark.parametrize(
    ("last", "had", "expected"),
    [
        pytest.param(None, set(), NextSend("system/welcome", 0, 0 * DAY, 1), id="first"),
        pytest.param(
            "system/welcome", {"system/welcome"}, NextSend("tips/a", 1, 3 * DAY, 2), id="second"
        ),
        pytest.param(
            "system/welcome",
            {"system/welcome", "tips/a"},
            NextSend("tips/b", 2, 3 * DAY, 3),
            id="had-is-passed-over",
        ),
    ],
)
def test_next_send_carries_delay_and_new_position(
    last: str | None, had: set[str], expected: NextSend
) -> None:
    assert choose_next(BASIC, last_item_id=last, position=0, had=had, pool=POOL) == expected


def test_rotation_item_carries_every_and_the_sequence_length() -> None:
    found = choose_next(
        ROTATING, last_item_id="tips/a", position=2, had={"system/welcome", "tips/a"}, pool=POOL
    )
    assert found == NextSend("testimonials/x", ROTATION_STEP, 4 * DAY, 2)
    assert found.is_rotation
    assert not NextSend("tips/a", 1, DAY, 2).is_rotation


def test_rotation_after_a_kind_not_rotated_starts_at_the_first_listed_kind() -> None:
    """The welcome (``system``) is not a rotated kind: the turn starts at ``tips``."""
    assert (
        next_rotation_item(
            ("tips", "testimonials", "tutorials"),
            last_item_id="system/welcome",
            had={"system/welcome", "tips/a"},
            pool=POOL,
        )
        == "tips/b"
    )
    assert (
        next_rotation_item(("testimonials", "tips"), last_item_id=None, had=set(), pool=POOL)
        == "testimonials/x"
    )


def test_rotation_after_the_last_listed_kind_wraps_to_the_first() -> None:
    kinds = ("tips", "tutorials")
    assert next_rotation_item(kinds, last_item_id="tutorials/t1", had=set(), pool=POOL) == "tips/a"


def test_rotation_with_no_kinds_is_done() -> None:
    assert next_rotation_item((), last_item_id="tips/a", had=set(), pool=POOL) is None
