"""Choosing the next item: steps in order, sequence edits, rotation (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.content.model import Rotation, SendWindow, Sequence, Step
from newsletter.drip.planning import ROTATION_STEP, choose_next, rotation_pool
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
