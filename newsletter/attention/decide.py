"""Which of one subscriber's due emails go now, and where the others go (pure).

Rules (copied into the README, "Attention"):

* Every marketing email (drip steps, rotation items, campaigns) counts against the cap.
  **Exempt** (never held back by the cap, but still counted, so the next marketing email
  keeps its distance): the confirmation email (not marketing at all, never here) and a drip
  step sent at once (``after: 0d``) as the first step of a sequence, in answer to the
  subscriber's own action (the welcome).
* Among the emails due at one moment the higher priority goes first; ties go oldest first.
* An email also gives way to a **higher-priority email due soon** (a queued row, a drip step
  whose time is set, a scheduled campaign) when sending it now would leave no room for that
  one at its time: it is deferred until after it.
* A deferred email moves to the first moment the cap has room, placed in its send window
  (drip steps: the sequence's window in the subscriber's zone; campaigns have no window and
  go when the cap frees). A drip step is only ever moved, never skipped. A campaign email
  that would be moved past ``NEWSLETTER_CAMPAIGN_STALE_HOURS`` after its own due time is
  skipped, with the reason recorded.
* ``--pause-drips`` is a special case: a campaign created with it **claims the subscriber's
  whole local day** against drip steps, whatever the cap (also ``off``). A drip step that
  would go on such a day (the campaign is due, queued or sent that local day) is deferred to
  the first moment of its window after the held day(s), with the reason; it is moved, never
  skipped. The exempt welcome still goes at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from newsletter.attention.cap import Cap, next_free
from newsletter.attention.priority import priority_name
from newsletter.content.model import SendWindow
from newsletter.drip.timing import local_date, next_in_window, resolve_local


@dataclass(frozen=True)
class Candidate:
    """One due email of one subscriber."""

    id: int
    priority: int
    due_at: datetime
    exempt: bool = False
    window: SendWindow | None = None  # drip steps: the sequence's window
    stale_at: datetime | None = None  # campaigns: skipped rather than moved past this
    label: str = ""
    drip: bool = False  # a drip step: held on a day a pause_drips campaign claims


@dataclass(frozen=True)
class Hold:
    """A ``pause_drips`` campaign of this subscriber at ``at``: it claims that local day."""

    at: datetime
    label: str = ""


@dataclass(frozen=True)
class Upcoming:
    """An email of the same subscriber that will compete soon."""

    at: datetime
    priority: int
    label: str = ""


@dataclass(frozen=True)
class Deferral:
    id: int
    until: datetime
    reason: str


@dataclass(frozen=True)
class Skip:
    id: int
    reason: str


@dataclass
class Decision:
    send: list[int] = field(default_factory=list)
    defer: list[Deferral] = field(default_factory=list)
    skip: list[Skip] = field(default_factory=list)


def decide(
    candidates: Sequence[Candidate],
    *,
    used: Sequence[datetime],
    upcoming: Sequence[Upcoming],
    caps: Sequence[Cap],
    zone: tzinfo,
    now: datetime,
    holds: Sequence[Hold] = (),
) -> Decision:
    """Decide for one subscriber at ``now``; ``used`` are the instants already counted."""
    decision = Decision()
    taken = list(used)
    held: dict[date, Hold] = {}
    for h in sorted(holds, key=lambda h: h.at):
        held.setdefault(local_date(h.at, zone), h)
    order = sorted(candidates, key=lambda c: (not c.exempt, -c.priority, c.due_at, c.id))
    # The same local day for every candidate: looked up once, and only when a day is held.
    hold = held.get(local_date(now, zone)) if held else None
    for candidate in order:
        if candidate.drip and not candidate.exempt and hold is not None:
            until = after_held_days(now, set(held), zone, candidate.window)
            reason = (
                f"{hold.label or 'a campaign'} (--pause-drips) claims the local day "
                f"{local_date(now, zone).isoformat()}"
            )
            decision.defer.append(Deferral(candidate.id, until, reason))
            continue
        if candidate.exempt or not caps:
            decision.send.append(candidate.id)
            taken.append(now)
            continue
        free = next_free(taken, caps, at=now)
        if free > now:
            reason = f"marketing cap {_caps(caps)} reached"
        else:
            rival = _outranked_by(candidate, taken, upcoming, caps, now=now)
            if rival is None:
                decision.send.append(candidate.id)
                taken.append(now)
                continue
            free = next_free([*taken, rival.at], caps, at=max(now, rival.at))
            reason = (
                f"gives way to {rival.label or 'an email'} ({priority_name(rival.priority)} "
                f"priority) due {rival.at:%Y-%m-%d %H:%M} UTC"
            )
        _move(decision, candidate, free, reason, zone)
    return decision


def sends_at_once(
    candidate: Candidate,
    *,
    used: Sequence[datetime],
    upcoming: Sequence[Upcoming],
    caps: Sequence[Cap],
    now: datetime,
    holds: Sequence[Hold] = (),
) -> bool:
    """True when ``decide`` would send ``candidate``, a subscriber's only one, at ``now``
    (False: ask ``decide``). The claim's common case, without sorting or building a
    decision: no day held against it, and either no cap, or room under the cap now and no
    higher-priority email due from now on that it might have to give way to."""
    if candidate.exempt:
        return True
    if candidate.drip and holds:
        return False  # which local days are held: decide works it out
    if not caps:
        return True
    if next_free(used, caps, at=now) > now:
        return False  # the cap is full: decide says until when
    # a higher-priority email due from now on: it may have to give way (decide knows)
    return not any(u.priority > candidate.priority and u.at >= now for u in upcoming)


def _outranked_by(
    candidate: Candidate,
    taken: Sequence[datetime],
    upcoming: Sequence[Upcoming],
    caps: Sequence[Cap],
    *,
    now: datetime,
) -> Upcoming | None:
    """The first higher-priority email that would find no room if ``candidate`` went now."""
    for rival in sorted(upcoming, key=lambda u: (u.at, -u.priority)):
        if rival.priority <= candidate.priority or rival.at < now:
            continue
        if next_free([*taken, now], caps, at=rival.at) > rival.at:
            return rival
    return None


def _move(
    decision: Decision, candidate: Candidate, free: datetime, reason: str, zone: tzinfo
) -> None:
    until = free if candidate.window is None else next_in_window(free, zone, candidate.window)
    if candidate.stale_at is not None and until > candidate.stale_at:
        decision.skip.append(
            Skip(
                candidate.id,
                f"{reason}; the next slot ({until:%Y-%m-%d %H:%M} UTC) is past the campaign's "
                "staleness limit (NEWSLETTER_CAMPAIGN_STALE_HOURS)",
            )
        )
        return
    decision.defer.append(Deferral(candidate.id, until, reason))


def after_held_days(
    at: datetime, held: set[date], zone: tzinfo, window: SendWindow | None
) -> datetime:
    """The first moment (in ``window``, if any) of a local day after ``at`` not in ``held``."""
    while local_date(at, zone) in held:
        day = local_date(at, zone) + timedelta(days=1)
        at = resolve_local(datetime.combine(day, time()), zone)
        if window is not None:
            at = next_in_window(at, zone, window)
    return at


def _caps(caps: Sequence[Cap]) -> str:
    return " and ".join(c.describe() for c in caps)


def stale_limit(due_at: datetime, *, stale_hours: float) -> datetime:
    return due_at + timedelta(hours=stale_hours)
