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


@dataclass(frozen=True)
class Happening:
    """``--event purchase@+5d`` / ``--tag customers@+2d``: something that happens at ``at``."""

    kind: str  # "event" or "tag"
    name: str
    at: datetime  # aware UTC

    def label(self) -> str:
        return f"{self.kind} {self.name}"


def exit_for(sequence: Sequence, happenings: Seq[Happening]) -> Happening | None:
    """The first happening that ends an enrollment in ``sequence`` (its ``exit:``)."""
    triggers = sequence.triggers
    for happening in sorted(happenings, key=lambda h: h.at):
        wanted = triggers.exit_events if happening.kind == "event" else triggers.exit_tags
        if happening.name in wanted:
            return happening
    return None


def start_for(sequence: Sequence, happenings: Seq[Happening]) -> Happening | None:
    """The first happening that enrolls someone in ``sequence`` (its ``enroll:``)."""
    triggers = sequence.triggers
    for happening in sorted(happenings, key=lambda h: h.at):
        wanted = triggers.on_events if happening.kind == "event" else triggers.on_tags
        if happening.name in wanted:
            return happening
    return None


def until_exit(
    sends: Seq[SimulatedSend], sequence: Sequence, happenings: Seq[Happening]
) -> tuple[list[SimulatedSend], Happening | None]:
    """The sends before the sequence's exit happening, and that happening (or None)."""
    stop = exit_for(sequence, happenings)
    if stop is None:
        return list(sends), None
    return [s for s in sends if s.at < stop.at], stop
