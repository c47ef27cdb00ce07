"""What an event does to a subscriber (pure). Events only ever move towards suppression.

Decisions:

* ``bounce`` with ``type`` ``bounce`` (or no type) is a hard bounce -> ``bounced``.
* ``bounce`` with ``type`` ``blocked`` is a soft bounce: the third one (counted over the
  subscriber's life, never reset by a later ``delivered``, so arrival order cannot matter)
  makes them ``bounced``. ``deferred`` is SendGrid still trying and counts for nothing.
* ``dropped`` acts on its reason: "Bounced Address" and "Invalid" -> ``bounced``,
  "Unsubscribed Address" -> ``unsubscribed``, "Spam Reporting Address" -> ``complained``.
  Other reasons (quota, bad SMTPAPI header) are our side's fault and change nothing.
* ``spamreport`` -> ``complained``; ``unsubscribe`` and ``group_unsubscribe`` ->
  ``unsubscribed``. ``group_resubscribe`` and every engagement event change nothing.
* Severity orders the states: active/pending < unsubscribed < bounced < complained. A
  subscriber only moves to a more severe state, so any order of the same events ends in
  the same state, and a late ``delivered`` never lifts a suppression.
* An ``unsubscribe`` that happened before the subscriber's latest confirmation is history
  (they opted in again afterwards) and is not applied again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from newsletter.events.parsing import ParsedEvent
from newsletter.models import SubscriberStatus

SOFT_BOUNCE_LIMIT = 3


class Effect(enum.Enum):
    NONE = "none"
    SOFT_BOUNCE = "soft_bounce"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


STATUS_FOR = {
    Effect.UNSUBSCRIBE: SubscriberStatus.UNSUBSCRIBED,
    Effect.BOUNCE: SubscriberStatus.BOUNCED,
    Effect.COMPLAINT: SubscriberStatus.COMPLAINED,
}

SEVERITY = {
    SubscriberStatus.PENDING: 0,
    SubscriberStatus.ACTIVE: 0,
    SubscriberStatus.UNSUBSCRIBED: 1,
    SubscriberStatus.INACTIVE: 1,
    SubscriberStatus.BOUNCED: 2,
    SubscriberStatus.COMPLAINED: 3,
}

DROPPED_REASONS = {
    "bounced address": Effect.BOUNCE,
    "invalid": Effect.BOUNCE,
    "unsubscribed address": Effect.UNSUBSCRIBE,
    "spam reporting address": Effect.COMPLAINT,
}

_BY_EVENT = {
    "spamreport": Effect.COMPLAINT,
    "unsubscribe": Effect.UNSUBSCRIBE,
    "group_unsubscribe": Effect.UNSUBSCRIBE,
}


def effect_of(event: ParsedEvent) -> Effect:
    """The effect one event has on its recipient, ignoring their current state."""
    if event.event == "bounce":
        kind = (event.bounce_type or "bounce").lower()
        return Effect.SOFT_BOUNCE if kind == "blocked" else Effect.BOUNCE
    if event.event == "dropped":
        return DROPPED_REASONS.get((event.reason or "").strip().lower(), Effect.NONE)
    return _BY_EVENT.get(event.event, Effect.NONE)


def applies(effect: Effect, *, occurred_at: datetime, confirmed_at: datetime | None) -> bool:
    """False for an unsubscribe older than the latest opt-in; True otherwise."""
    if effect is Effect.UNSUBSCRIBE and confirmed_at is not None:
        return occurred_at >= confirmed_at
    return effect is not Effect.NONE


def target_status(
    current: SubscriberStatus | None, effects: Iterable[Effect], *, soft_bounces: int
) -> SubscriberStatus | None:
    """The state to move to, or None to stay. ``soft_bounces`` is the total, new included."""
    wanted = [STATUS_FOR[e] for e in effects if e in STATUS_FOR]
    if soft_bounces >= SOFT_BOUNCE_LIMIT:
        wanted.append(SubscriberStatus.BOUNCED)
    if not wanted:
        return None
    strongest = max(wanted, key=SEVERITY.__getitem__)
    if current is not None and SEVERITY[strongest] <= SEVERITY[current]:
        return None
    return strongest
