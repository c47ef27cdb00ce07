"""``subscribers plan EMAIL`` and ``sequence simulate``: the forecast over real facts."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from sqlalchemy import select

from newsletter.addresses import normalize_email
from newsletter.app import App
from newsletter.attention.claims import policy_of
from newsletter.attention.decide import Hold, stale_limit
from newsletter.attention.forecast import DripState, OneOff, PlannedEmail, forecast
from newsletter.attention.policy import AttentionPolicy
from newsletter.campaigns.schedule import Segment
from newsletter.content.library import ContentLibrary
from newsletter.content.model import Sequence
from newsletter.drip.planning import choose_next, rotation_pool
from newsletter.drip.timing import resolve_local, step_due_at
from newsletter.errors import SubscriberNotFound
from newsletter.models import (
    Campaign,
    CampaignState,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberPreferences,
)

MARKETING = ("drip", "campaign")
FINAL = ("sent", "failed", "unknown", "skipped")
HOLDING = (CampaignState.SCHEDULED.value, CampaignState.SENDING.value, CampaignState.PAUSED.value)


def pool_of(library: ContentLibrary) -> dict[str, list[str]]:
    kinds = {k for s in library.sequences() if s.then for k in s.then.kinds}
    return rotation_pool([i.id for i in library.items() if not i.transactional], kinds)


def examples_of(library: ContentLibrary) -> set[str]:
    """Example items: never sent to real subscribers, so a forecast counts them as had."""
    return {i.id for i in library.items() if i.example}


def simulate_sequence(
    policy: AttentionPolicy,
    library: ContentLibrary,
    sequence: Sequence,
    *,
    signup: datetime,
    zone: tzinfo,
    rotations: int,
) -> list[PlannedEmail]:
    """One new subscriber in ``sequence`` alone, with the marketing cap applied."""
    state = DripState(
        sequence, sequence.priority, signup + sequence.steps[0].after, rotations_left=rotations
    )
    return forecast(
        now=signup,
        until=signup + timedelta(days=3650),
        zone=zone,
        caps=policy.caps,
        used=[],
        had=examples_of(library),
        drips=[state],
        one_offs=[],
        pool=pool_of(library),
    )


def plan_subscriber(app: App, email: str, *, now: datetime, days: int) -> list[PlannedEmail]:
    """What ``email`` will get in the next ``days`` days, cap and priorities applied."""
    policy = policy_of(app)
    address = normalize_email(email)
    with app.sessions() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if subscriber is None:
            raise SubscriberNotFound(address)
        prefs = session.get(SubscriberPreferences, subscriber.id)
        zone = policy.zone(subscriber.timezone)
        rows = list(
            session.scalars(
                select(Delivery).where(
                    Delivery.subscriber_id == subscriber.id, Delivery.kind.in_(MARKETING)
                )
            )
        )
        enrollments = list(
            session.scalars(
                select(Enrollment).where(
                    Enrollment.subscriber_id == subscriber.id,
                    Enrollment.status == EnrollmentStatus.ACTIVE.value,
                )
            )
        )
        campaigns = {c.id: c for c in session.scalars(select(Campaign))}
        active = subscriber.status == "active"
        tags = list(subscriber.tags or [])
    if not active:
        return []
    horizon = now - timedelta(days=8)
    used = [
        r.sent_at or r.updated_at
        for r in rows
        if r.status
        in (DeliveryStatus.SENT.value, DeliveryStatus.LEASED.value, DeliveryStatus.SENDING.value)
        and (r.sent_at or r.updated_at) > horizon
    ]
    queued = [r for r in rows if r.status == DeliveryStatus.QUEUED.value]
    drips = _drips(app.library, enrollments, queued, rows, zone)
    one_offs = _one_offs(policy, campaigns, queued, rows, tags, zone)
    holds = _holds(policy, campaigns, rows, one_offs, tags, zone)
    off = set(prefs.topics_off or []) if prefs else set()

    def opted_out(item: str, sequence: str | None, campaign_topic: str | None) -> str | None:
        topic = policy.topic_of(item, sequence=sequence, campaign_topic=campaign_topic or None)
        return topic if topic is not None and topic in off else None

    return forecast(
        now=now,
        until=now + timedelta(days=days),
        zone=zone,
        caps=policy.caps_for(prefs.frequency if prefs else None),
        used=used,
        had={r.item_id for r in rows} | examples_of(app.library),
        drips=drips,
        one_offs=one_offs,
        pool=pool_of(app.library),
        opted_out=opted_out,
        holds=[h for h, topic in holds if topic not in off],
    )


def _drips(
    library: ContentLibrary,
    enrollments: list[Enrollment],
    queued: list[Delivery],
    rows: list[Delivery],
    zone: tzinfo,
) -> list[DripState]:
    sequences = {s.name: s for s in library.sequences()}
    planned = {r.enrollment_id: r for r in queued if r.enrollment_id is not None}
    final = {(r.enrollment_id or 0, r.item_id): r for r in rows if r.status in FINAL}
    had = {r.item_id for r in rows} | examples_of(library)
    pool = pool_of(library)
    states = []
    for e in enrollments:
        sequence = sequences.get(e.sequence)
        if sequence is None:
            continue
        row = planned.get(e.id)
        due = row.due_at if row is not None else e.next_due_at
        done = final.get((e.id, e.last_item_id or ""))
        if row is None and due is None and done is not None:
            # sent, and the planner's next pass has not set the next due time yet
            nxt = choose_next(
                sequence, last_item_id=e.last_item_id, position=e.position, had=had, pool=pool
            )
            if nxt is not None:
                base = done.sent_at or done.updated_at
                due = step_due_at(base, nxt.delay, zone, sequence.send_window)
        state = DripState(
            sequence,
            sequence.priority,
            due,
            last_item_id=e.last_item_id,
            position=e.position,
            planned_item=row.item_id if row is not None else None,
            planned_step=row.step if row is not None and row.step is not None else -1,
        )
        states.append(state)
    return states


def _one_offs(
    policy: AttentionPolicy,
    campaigns: dict[int, Campaign],
    queued: list[Delivery],
    rows: list[Delivery],
    tags: list[str],
    zone: tzinfo,
) -> list[OneOff]:
    out = []
    mine = {r.campaign_id for r in rows if r.campaign_id is not None}
    for r in queued:
        c = campaigns.get(r.campaign_id or -1)
        if c is None or c.state not in (CampaignState.SENDING.value, CampaignState.SCHEDULED.value):
            continue
        stale = stale_limit(r.deferred_from or r.due_at, stale_hours=policy.stale_hours)
        out.append(
            OneOff(
                f"campaign {c.name}",
                c.item_id,
                r.due_at,
                c.priority,
                stale,
                c.topic,
                pause_drips=c.pause_drips,
            )
        )
    for c in campaigns.values():
        if c.id in mine or c.audience_frozen or c.scheduled_at is None:
            continue
        if c.state not in (CampaignState.SCHEDULED.value, CampaignState.SENDING.value):
            continue
        if not Segment(tuple(c.include_tags or ()), tuple(c.exclude_tags or ())).matches(tags):
            continue
        at = c.scheduled_at
        if c.local_time is not None:
            at = resolve_local(datetime.fromisoformat(c.local_time), zone)
        stale = stale_limit(at, stale_hours=policy.stale_hours)
        out.append(
            OneOff(
                f"campaign {c.name}",
                c.item_id,
                at,
                c.priority,
                stale,
                c.topic,
                pause_drips=c.pause_drips,
            )
        )
    return out


def _holds(
    policy: AttentionPolicy,
    campaigns: dict[int, Campaign],
    rows: list[Delivery],
    one_offs: list[OneOff],
    tags: list[str],
    zone: tzinfo,
) -> list[tuple[Hold, str | None]]:
    """``pause_drips`` campaigns the claim counts that are not forecast as one-offs: rows
    sent or in flight, rows of a paused campaign, and a paused campaign not frozen yet."""
    forecast_as = {o.label for o in one_offs}
    out: list[tuple[Hold, str | None]] = []
    for r in rows:
        c = campaigns.get(r.campaign_id or -1)
        if c is None or not c.pause_drips or f"campaign {c.name}" in forecast_as:
            continue
        if r.status in (DeliveryStatus.SKIPPED.value, DeliveryStatus.FAILED.value):
            continue
        if r.status == DeliveryStatus.QUEUED.value and c.state not in HOLDING:
            continue  # cancelled or stale: it may never go
        hold = Hold(r.sent_at or r.due_at, f"campaign {c.name}")
        out.append((hold, policy.topic_of(c.item_id, campaign_topic=c.topic)))
    mine = {r.campaign_id for r in rows if r.campaign_id is not None}
    for c in campaigns.values():
        if not c.pause_drips or c.id in mine or c.audience_frozen or c.scheduled_at is None:
            continue
        if c.state != CampaignState.PAUSED.value:
            continue
        segment = Segment(tuple(c.include_tags or ()), tuple(c.exclude_tags or ()))
        if not segment.matches(tags):
            continue
        at = c.scheduled_at
        if c.local_time is not None:
            at = resolve_local(datetime.fromisoformat(c.local_time), zone)
        out.append(
            (Hold(at, f"campaign {c.name}"), policy.topic_of(c.item_id, campaign_topic=c.topic))
        )
    return out
