"""Which item an enrollment sends next (pure: the ledger's facts are passed in).

Decisions (copied into the README):

* **Progress is tracked by the last item planned** (``enrollments.last_item_id``), not only
  by the step index, so a sequence edited while people are in it behaves sensibly:

  - steps inserted or reordered *before* a subscriber's last item are not sent to them
    (they continue forward from where they are); steps after it are;
  - if their last item was removed from the sequence, they continue at the stored step
    index (``position``), clamped to the new length;
  - an item this subscriber already had (any ledger row for it: drip or campaign, sent,
    in flight, unknown, failed or skipped) is never planned again: that step is passed over
    and the next unsent step follows. So no item is ever sent twice to one subscriber.

* **Rotation** (``then:``) starts after the last step: every ``every``, the next item of the
  ``from`` kinds this subscriber has not had. Kinds take turns in the order listed, starting
  after the kind of the previous item (tip, testimonial, tutorial, tip, ...); a kind with
  nothing left is passed over; within a kind items go in id order. When no item is left the
  enrollment is ``done``. Items added to the library later are picked up by enrollments
  still rotating; a ``done`` enrollment stays done.
* Delays: the first step's ``after`` counts from enrollment (and ignores the window); a
  later step's from the previous item's send; rotation items ``every`` after the previous.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import timedelta

from newsletter.content.model import Sequence

ROTATION_STEP = -1  # ``deliveries.step`` of a rotation item


@dataclass(frozen=True)
class NextSend:
    """The item an enrollment sends next, and the delay before it."""

    item_id: str
    step: int  # index in ``sequence.steps``, or ROTATION_STEP
    delay: timedelta
    position: int  # the enrollment's ``position`` once this item is planned

    @property
    def is_rotation(self) -> bool:
        return self.step == ROTATION_STEP


def resume_index(sequence: Sequence, *, last_item_id: str | None, position: int) -> int:
    """Index of the first step still to consider for this enrollment."""
    if last_item_id is not None:
        for index, step in enumerate(sequence.steps):
            if step.item_id == last_item_id:
                return index + 1
    return max(0, min(position, len(sequence.steps)))


def choose_next(
    sequence: Sequence,
    *,
    last_item_id: str | None,
    position: int,
    had: Collection[str],
    pool: Mapping[str, Seq[str]],
) -> NextSend | None:
    """The next item to send, or None when the enrollment is done.

    ``had`` holds every item id this subscriber has a ledger row for; ``pool`` maps each
    kind to its item ids in order (the rotation candidates).
    """
    start = resume_index(sequence, last_item_id=last_item_id, position=position)
    for index in range(start, len(sequence.steps)):
        step = sequence.steps[index]
        if step.item_id not in had:
            return NextSend(step.item_id, index, step.after, index + 1)
    rotation = sequence.then
    if rotation is None:
        return None
    item = next_rotation_item(rotation.kinds, last_item_id=last_item_id, had=had, pool=pool)
    if item is None:
        return None
    return NextSend(item, ROTATION_STEP, rotation.every, len(sequence.steps))


def next_rotation_item(
    kinds: Seq[str],
    *,
    last_item_id: str | None,
    had: Collection[str],
    pool: Mapping[str, Seq[str]],
) -> str | None:
    """The first unseen item, kinds taking turns after the previous item's kind."""
    if not kinds:
        return None
    last_kind = last_item_id.partition("/")[0] if last_item_id else None
    first = (kinds.index(last_kind) + 1) % len(kinds) if last_kind in kinds else 0
    for turn in range(len(kinds)):
        kind = kinds[(first + turn) % len(kinds)]
        for item_id in pool.get(kind, ()):
            if item_id not in had:
                return item_id
    return None


def rotation_pool(item_ids: Seq[str], kinds: Collection[str]) -> dict[str, list[str]]:
    """Group item ids (``<kind>/<slug>``) of the given kinds, each kind in id order."""
    pool: dict[str, list[str]] = {kind: [] for kind in kinds}
    for item_id in sorted(item_ids):
        kind = item_id.partition("/")[0]
        if kind in pool:
            pool[kind].append(item_id)
    return pool
