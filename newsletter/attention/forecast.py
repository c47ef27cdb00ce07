"""What one subscriber will get and when, with the cap and priorities applied (pure).

``newsletter subscribers plan EMAIL`` and ``newsletter sequence simulate`` print this. It
replays the planner (``choose_next``, ``step_due_at``: drip steps inside their window, each
one ``after`` the previous send) and the claim (``decide``: the cap, priorities, moves and
skips, ``--pause-drips`` holds) on one subscriber's facts, assuming each email goes out
the moment it may. Not modelled: provider retries, and changes made later.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from newsletter.attention.cap import Cap
from newsletter.attention.decide import Candidate, Hold, Upcoming, decide
from newsletter.content.model import SendWindow, Sequence
from newsletter.drip.planning import choose_next
from newsletter.drip.timing import next_in_window, step_due_at

MAX_EVENTS = 10_000  # a safety stop; a 90-day plan has a few dozen


@dataclass
class DripState:
    """One enrollment as it stands (``due_at`` None: nothing due any more)."""

    sequence: Sequence
    priority: int
    due_at: datetime | None
    last_item_id: str | None = None
    position: int = 0
    planned_item: str | None = None  # a queued ledger row of this enrollment, if any
    planned_step: int = -1  # that row's step
    rotations_left: int = 10_000


@dataclass(frozen=True)
class OneOff:
    """A queued campaign row, or a scheduled campaign the subscriber is in the audience of."""

    label: str
    item_id: str
    at: datetime
    priority: int
    stale_at: datetime | None
    topic: str | None = None
    pause_drips: bool = False  # claims its local day against drip steps


@dataclass(frozen=True)
class PlannedEmail:
    at: datetime  # when it goes (or when it was skipped)
    item_id: str
    source: str  # "sequence NAME" or "campaign NAME"
    status: str  # "send" or "skip"
    note: str = ""  # "moved from ... : reason" or the skip reason


@dataclass
class _Pending:
    key: int
    source: str
    item_id: str
    due: datetime
    priority: int
    exempt: bool = False
    window: SendWindow | None = None
    stale_at: datetime | None = None
    drip: DripState | None = None
    step: int = 0
    first_due: datetime | None = None
    notes: list[str] = field(default_factory=list)
    pause_drips: bool = False


def forecast(
    *,
    now: datetime,
    until: datetime,
    zone: tzinfo,
    caps: Seq[Cap],
    used: Seq[datetime],
    had: set[str],
    drips: Seq[DripState],
    one_offs: Seq[OneOff],
    pool: Mapping[str, Seq[str]],
    opted_out: Callable[[str, str | None, str | None], str | None] = lambda *_: None,
    holds: Seq[Hold] = (),
) -> list[PlannedEmail]:
    """Every email due before ``until``, in order; ``opted_out(item, sequence, campaign
    topic)`` returns the topic that stops it, if any; ``holds`` are ``pause_drips``
    campaigns that are not in ``one_offs`` (sent, or of a paused campaign)."""
    had = set(had)
    taken = list(used)
    held = list(holds)
    counter = itertools.count()  # tie-breaks in the order pending emails arise
    pending: list[_Pending] = []
    for state in drips:
        nxt = _drip_pending(state, next(counter), had, pool, zone)
        if nxt is not None:
            pending.append(nxt)
    for one in one_offs:
        pending.append(
            _Pending(
                next(counter),
                one.label,
                one.item_id,
                max(one.at, now),
                one.priority,
                stale_at=one.stale_at,
                first_due=one.at,
                notes=[one.topic or ""],
                pause_drips=one.pause_drips,
            )
        )
    out: list[PlannedEmail] = []
    for _ in range(MAX_EVENTS):
        if not pending:
            break
        moment = max(now, min(p.due for p in pending))
        if moment >= until:
            break
        due = [p for p in pending if p.due <= moment]
        rest = [p for p in pending if p.due > moment]
        candidates = []
        for p in due:
            sequence = p.drip.sequence.name if p.drip else None
            topic = opted_out(p.item_id, sequence, p.notes[0] if not p.drip else None)
            if topic is not None:
                out.append(
                    PlannedEmail(
                        moment, p.item_id, p.source, "skip", f"opted out of topic {topic!r}"
                    )
                )
                pending.remove(p)
                _advance(p, moment, pending, counter, had, pool, zone)
                continue
            candidates.append(
                Candidate(
                    p.key,
                    p.priority,
                    p.first_due or p.due,
                    exempt=p.exempt,
                    window=p.window,
                    stale_at=p.stale_at,
                    label=p.item_id,
                    drip=p.drip is not None,
                )
            )
        upcoming = [Upcoming(p.due, p.priority, p.source) for p in rest if not p.exempt]
        holding = [
            *held,
            *(
                Hold(p.due, p.source)
                for p in pending
                if p.pause_drips and opted_out(p.item_id, None, p.notes[0]) is None
            ),
        ]
        decision = decide(
            candidates,
            used=taken,
            upcoming=upcoming,
            caps=caps,
            zone=zone,
            now=moment,
            holds=holding,
        )
        by_key = {p.key: p for p in due}
        for key in decision.send:
            p = by_key[key]
            taken.append(moment)
            out.append(PlannedEmail(moment, p.item_id, p.source, "send", "; ".join(p.notes[1:])))
            if p.pause_drips:
                held.append(Hold(moment, p.source))
            pending.remove(p)
            _advance(p, moment, pending, counter, had, pool, zone)
        for deferral in decision.defer:
            p = by_key[deferral.id]
            p.notes.append(f"moved from {p.due:%Y-%m-%d %H:%M} UTC: {deferral.reason}")
            p.due = deferral.until
        for skip in decision.skip:
            p = by_key[skip.id]
            out.append(PlannedEmail(moment, p.item_id, p.source, "skip", skip.reason))
            pending.remove(p)
    return out


def _advance(
    p: _Pending,
    sent_at: datetime,
    pending: list[_Pending],
    counter: Iterator[int],
    had: set[str],
    pool: Mapping[str, Seq[str]],
    zone: tzinfo,
) -> None:
    had.add(p.item_id)
    state = p.drip
    if state is None:
        return
    state.last_item_id = p.item_id
    state.planned_item = None
    nxt = choose_next(
        state.sequence,
        last_item_id=state.last_item_id,
        position=state.position,
        had=had,
        pool=pool,
    )
    if nxt is None or (nxt.is_rotation and state.rotations_left <= 0):
        state.due_at = None
        return
    state.due_at = step_due_at(sent_at, nxt.delay, zone, state.sequence.send_window)
    follow = _drip_pending(state, next(counter), had, pool, zone)
    if follow is not None:
        pending.append(follow)


def _drip_pending(
    state: DripState, key: int, had: set[str], pool: Mapping[str, Seq[str]], zone: tzinfo
) -> _Pending | None:
    chosen = None
    if state.planned_item is not None and state.due_at is not None:
        item, step, first = state.planned_item, state.planned_step, state.planned_step == 0
    else:
        if state.due_at is None:
            return None
        chosen = choose_next(
            state.sequence,
            last_item_id=state.last_item_id,
            position=state.position,
            had=had,
            pool=pool,
        )
        if chosen is None or (chosen.is_rotation and state.rotations_left <= 0):
            return None
        item, step, first = chosen.item_id, chosen.step, state.last_item_id is None
    window = state.sequence.send_window
    planned = state.planned_item is not None
    due = state.due_at if first or planned else next_in_window(state.due_at, zone, window)
    if chosen is not None:
        state.position = chosen.position
        if chosen.is_rotation:
            state.rotations_left -= 1
    exempt = first and step == 0 and state.sequence.steps[0].after.total_seconds() == 0
    return _Pending(
        key,
        f"sequence {state.sequence.name}",
        item,
        due,
        state.priority,
        exempt=exempt,
        window=window,
        drip=state,
        step=step,
        notes=[""],
    )
