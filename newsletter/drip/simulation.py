"""Replay a sequence for one subscriber, assuming each email is sent when due (pure).

``newsletter sequence simulate`` prints this; it uses the same ``choose_next`` and
``step_due_at`` as the planner, so what it shows is what the planner does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from newsletter.content.model import Sequence
from newsletter.drip.planning import choose_next
from newsletter.drip.timing import step_due_at


@dataclass(frozen=True)
class SimulatedSend:
    number: int  # 1-based
    item_id: str
    step: int  # index in the sequence, -1 for a rotation item
    at: datetime  # aware UTC

    def local(self, zone: tzinfo) -> datetime:
        return self.at.astimezone(zone)


def simulate(
    sequence: Sequence,
    pool: Mapping[str, Seq[str]],
    *,
    signup: datetime,
    zone: tzinfo,
    rotations: int = 3,
    examples: Collection[str] = frozenset(),
) -> list[SimulatedSend]:
    """Every step of ``sequence`` and up to ``rotations`` rotation items, in send order.

    Items in ``examples`` are never sent: as in the planner, the next item goes out in
    the slot the example would have had."""
    sends: list[SimulatedSend] = []
    had: set[str] = set()
    last: str | None = None
    position = 0
    previous = signup.astimezone(UTC)
    rotated = 0
    while True:
        nxt = choose_next(sequence, last_item_id=last, position=position, had=had, pool=pool)
        if nxt is None or (nxt.is_rotation and rotated >= rotations):
            return sends
        if last is None:  # the first step ignores the window
            at = previous + nxt.delay
        else:
            at = step_due_at(previous, nxt.delay, zone, sequence.send_window)
        while nxt.item_id in examples:
            had.add(nxt.item_id)
            nxt = choose_next(
                sequence, last_item_id=nxt.item_id, position=nxt.position, had=had, pool=pool
            )
            if nxt is None or (nxt.is_rotation and rotated >= rotations):
                return sends
        sends.append(SimulatedSend(len(sends) + 1, nxt.item_id, nxt.step, at))
        rotated += nxt.is_rotation
        had.add(nxt.item_id)
        last, position, previous = nxt.item_id, nxt.position, at
