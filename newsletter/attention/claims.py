"""The marketing cap and priorities applied where the send is decided: at claim time.

Why here and not (only) in the planners: the claim is the one moment that sees every kind
of marketing email (drip steps planned by one job, campaign rows frozen by another, rows
retried after a 429) just before one is committed to going out, and it is where unsubscribes
and suppressions are already re-checked. A planner's view can be stale (a campaign frozen
after the drip step was planned), the claim's cannot.

Several workers: each claims due rows ``FOR UPDATE SKIP LOCKED``, then locks the rows of the
*subscribers* in its batch (``SELECT ... FOR NO KEY UPDATE``, in id order, so workers never
deadlock) before counting that subscriber's slots. Two workers holding rows of the same
subscriber therefore decide one after the other, and the second (a fresh READ COMMITTED
snapshot per statement) sees the first one's lease: no two workers can both use the last
slot. SQLite has one writer (``BEGIN IMMEDIATE``).

Per subscriber (see ``decide`` for the rules):

* rows of a topic the subscriber opted out of are ``skipped`` ("opted out of topic ...");
* the others are decided by ``decide``: sent now (leased), moved (``due_at`` later, the
  reason in ``error`` and in ``delivery_deferrals``) or, campaign rows moved past their
  staleness limit, ``skipped`` with the reason.
* ``--pause-drips``: the subscriber's ``pause_drips`` campaigns around ``now`` (ledger rows
  sent or in flight, or queued for a campaign that may still send them, at their send time
  or due time; and scheduled campaigns whose
  audience is not frozen yet, matched by their segment, at their send instant) are
  ``Hold``s: a drip step on such a local day is deferred past it (see ``decide``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.attention.cap import longest
from newsletter.attention.decide import (
    Candidate,
    Decision,
    Hold,
    Upcoming,
    decide,
    sends_at_once,
    stale_limit,
)
from newsletter.attention.policy import AttentionPolicy, build_policy
from newsletter.bound_lists import in_list, not_in_list, unindexed
from newsletter.campaigns.schedule import Segment, segment_from
from newsletter.drip.timing import resolve_local
from newsletter.ledger import Attention, Claimed
from newsletter.models import (
    Campaign,
    CampaignState,
    Delivery,
    DeliveryDeferral,
    DeliveryKind,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberPreferences,
    UTCDateTime,
)

# Plain strings, read once: an enum member's ``.value`` is a descriptor call, per row here.
DRIP = DeliveryKind.DRIP.value
CAMPAIGN = DeliveryKind.CAMPAIGN.value
MARKETING = (DRIP, CAMPAIGN)
IN_FLIGHT = (DeliveryStatus.LEASED.value, DeliveryStatus.SENDING.value)
QUEUED = DeliveryStatus.QUEUED.value
SENT = DeliveryStatus.SENT.value
UNKNOWN = DeliveryStatus.UNKNOWN.value
UPCOMING_CAMPAIGN_STATES = (CampaignState.SCHEDULED.value, CampaignState.SENDING.value)
HOLDING_CAMPAIGN_STATES = (*UPCOMING_CAMPAIGN_STATES, CampaignState.PAUSED.value)
HOLD_NEAR = timedelta(days=2)  # a local day lies within a day of its UTC date


@dataclass
class _Facts:
    """What one claim knows about the subscribers of its batch."""

    subscriber_ids: list[int] = field(default_factory=list)
    zones: dict[int, str] = field(default_factory=dict)
    # Read only when a campaign's segment must be matched (``_tags``): most claims have
    # no such campaign, and JSON per subscriber is the costliest column to read.
    tags: dict[int, list[str]] | None = None
    topics_off: dict[int, set[str]] = field(default_factory=dict)
    frequency: dict[int, str] = field(default_factory=dict)
    sequences: dict[int, str] = field(default_factory=dict)  # enrollment id -> sequence
    campaigns: dict[int, Campaign] = field(default_factory=dict)
    used: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    upcoming: dict[int, list[Upcoming]] = field(default_factory=lambda: defaultdict(list))
    # pause_drips campaigns: (subscriber, at, label, topic)
    holds: dict[int, list[tuple[Hold, str | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # Other queued marketing rows of these subscribers due within the horizon.
    queued: list[_Queued] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Queued:
    """A queued marketing row of a subscriber in the claim (not in its batch)."""

    subscriber_id: int
    kind: str
    due_at: datetime
    campaign_id: int | None
    enrollment_id: int | None
    step: int | None


def apply_attention(
    session: Session, rows: Sequence[Claimed], *, now: datetime, policy: AttentionPolicy
) -> list[Claimed]:
    """Return the rows that may go now; defer or skip the others (written, not committed)."""
    marketing = [r for r in rows if r.kind in MARKETING and r.subscriber_id is not None]
    if not marketing:
        return list(rows)
    wanted = sorted({r.subscriber_id for r in marketing if r.subscriber_id is not None})
    locked = _lock_subscribers(session, wanted)
    if len(locked) < len(wanted):
        # Another claim holds some of these subscribers: their rows stay queued for a
        # later claim (never waited for, so two claims cannot deadlock).
        marketing = [r for r in marketing if r.subscriber_id in locked]
    subscriber_ids = sorted(locked)
    horizon = max(longest(policy.caps_for("weekly")), timedelta(days=1))
    facts = _load_facts(session, marketing, subscriber_ids, now=now, horizon=horizon)
    _load_upcoming(session, facts, policy, marketing, subscriber_ids, now=now, horizon=horizon)
    drip_ids = {r.subscriber_id for r in marketing if r.kind == DRIP}
    _load_holds(session, facts, policy, sorted(i for i in drip_ids if i is not None), now=now)
    by_subscriber: dict[int, list[Claimed]] = defaultdict(list)
    for row in marketing:
        assert row.subscriber_id is not None
        by_subscriber[row.subscriber_id].append(row)
    sent: set[int] = set()
    writes = _Writes()
    for subscriber_id, own in by_subscriber.items():
        decision, opted_out = _decide_one(subscriber_id, own, facts, policy, now=now)
        writes.add(decision, opted_out, own, subscriber_id, now=now)
        sent.update(decision.send)
    writes.flush(session, now=now)
    return [r for r in rows if r.kind not in MARKETING or r.subscriber_id is None or r.id in sent]


def _lock_subscribers(session: Session, ids: list[int]) -> set[int]:
    """Lock the subscribers whose rows this claim decides; returns those it got.

    On PostgreSQL a subscriber another claim holds is skipped, not waited for: a claim
    runs up to ``ATTENTION_ROUNDS`` rounds in one transaction, each locking another
    sorted set, so waiting could close a cycle with a claim doing the same (a deadlock
    PostgreSQL would break by failing one of them)."""
    if session.get_bind().dialect.name != "postgresql":
        return set(ids)  # SQLite: one writer at a time
    return set(
        session.connection().scalars(
            select(Subscriber.id)
            .where(in_list(session, Subscriber.id, ids))
            .order_by(Subscriber.id)
            # NO KEY UPDATE: claims still exclude each other, but inserting a ledger
            # row (its foreign key takes KEY SHARE on the subscriber) is never blocked, so a
            # planner and a claim cannot deadlock.
            .with_for_update(key_share=True, skip_locked=True)
        )
    )


def _load_facts(
    session: Session,
    rows: Sequence[Claimed],
    ids: list[int],
    *,
    now: datetime,
    horizon: timedelta,
) -> _Facts:
    facts = _Facts(subscriber_ids=ids)
    facts.zones.update(
        session.connection()
        .execute(
            select(Subscriber.id, Subscriber.timezone).where(in_list(session, Subscriber.id, ids))
        )
        .all()
    )
    for sid, off, frequency in session.connection().execute(
        select(
            SubscriberPreferences.subscriber_id,
            SubscriberPreferences.topics_off,
            SubscriberPreferences.frequency,
        ).where(in_list(session, SubscriberPreferences.subscriber_id, ids))
    ):
        facts.topics_off[sid] = set(off or [])
        facts.frequency[sid] = frequency
    # One read of these subscribers' marketing rows serves the cap (rows sent or in flight
    # within the horizon: ``used``) and the priorities (other rows queued before ``now +
    # horizon``: ``_load_upcoming``). The batch's own rows are still queued: left out in
    # SQL (a thousand rows of ten columns each cost more to fetch than to skip there).
    batch = [r.id for r in rows]
    since, until = now - horizon, now + horizon
    status = unindexed(session, Delivery.status)  # by subscriber, never by status
    found = session.connection().execute(
        select(
            Delivery.subscriber_id,
            Delivery.status,
            Delivery.sent_at,
            Delivery.updated_at,
            Delivery.kind,
            Delivery.due_at,
            Delivery.campaign_id,
            Delivery.enrollment_id,
            Delivery.step,
        ).where(
            in_list(session, Delivery.subscriber_id, ids),
            Delivery.kind.in_(MARKETING),
            or_(
                status.in_(IN_FLIGHT),
                and_(status == SENT, Delivery.sent_at > since),
                and_(status == UNKNOWN, Delivery.updated_at > since),
                and_(
                    status == QUEUED,
                    Delivery.due_at < until,
                    not_in_list(session, Delivery.id, batch),
                ),
            ),
        )
    )
    for owner, state, sent_at, updated_at, kind, due_at, campaign, enrollment, step in found:
        subscriber = cast(int, owner)  # one of ``ids``: never NULL
        if state == QUEUED:
            facts.queued.append(_Queued(subscriber, kind, due_at, campaign, enrollment, step))
        else:
            facts.used[subscriber].append(sent_at if state == SENT and sent_at else updated_at)
    return facts


def _tags(session: Session, facts: _Facts) -> dict[int, list[str]]:
    """The tags of the claim's subscribers, read on first use."""
    if facts.tags is None:
        facts.tags = {
            sid: list(tags or [])
            for sid, tags in session.connection().execute(
                select(Subscriber.id, Subscriber.tags).where(
                    in_list(session, Subscriber.id, facts.subscriber_ids)
                )
            )
        }
    return facts.tags


def _load_upcoming(
    session: Session,
    facts: _Facts,
    policy: AttentionPolicy,
    rows: Sequence[Claimed],
    ids: list[int],
    *,
    now: datetime,
    horizon: timedelta,
) -> None:
    """Other emails of these subscribers due before ``now + horizon``, with their priority."""
    until = now + horizon
    queued = facts.queued
    enrollment_ids = {r.enrollment_id for r in rows if r.enrollment_id is not None}
    enrollment_ids |= {q.enrollment_id for q in queued if q.enrollment_id is not None}
    if enrollment_ids:
        facts.sequences.update(
            session.connection()
            .execute(
                select(Enrollment.id, Enrollment.sequence).where(
                    in_list(session, Enrollment.id, enrollment_ids)
                )
            )
            .all()
        )
    campaign_ids = {r.campaign_id for r in rows if r.campaign_id is not None}
    campaign_ids |= {q.campaign_id for q in queued if q.campaign_id is not None}
    upcoming_campaigns = list(
        session.scalars(
            select(Campaign).where(
                Campaign.state.in_(UPCOMING_CAMPAIGN_STATES),
                Campaign.audience_frozen.is_(False),
                Campaign.scheduled_at < until,
            )
        )
    )
    if campaign_ids:
        for found in session.scalars(
            select(Campaign).where(in_list(session, Campaign.id, campaign_ids))
        ):
            facts.campaigns[found.id] = found
    for q in queued:
        sid = q.subscriber_id
        if q.kind == CAMPAIGN:
            campaign = facts.campaigns.get(q.campaign_id) if q.campaign_id is not None else None
            if campaign is None or campaign.state != CampaignState.SENDING.value:
                continue
            priority, label = campaign.priority, f"campaign {campaign.name}"
        else:
            sequence = facts.sequences.get(q.enrollment_id) if q.enrollment_id is not None else None
            if _exempt(policy, sequence, q.step):
                continue
            priority, label = policy.sequence_priority(sequence), f"sequence {sequence}"
        facts.upcoming[sid].append(Upcoming(max(q.due_at, now), priority, label))
    for sid, sequence, due in session.connection().execute(
        select(Enrollment.subscriber_id, Enrollment.sequence, Enrollment.next_due_at).where(
            in_list(session, Enrollment.subscriber_id, ids),
            Enrollment.status == EnrollmentStatus.ACTIVE.value,
            Enrollment.next_due_at < until,
            Enrollment.last_item_id.is_not(None),
        )
    ):
        if due is not None:
            facts.upcoming[sid].append(
                Upcoming(max(due, now), policy.sequence_priority(sequence), f"sequence {sequence}")
            )
    _upcoming_campaigns(session, facts, policy, upcoming_campaigns, ids, now=now)


def _upcoming_campaigns(
    session: Session,
    facts: _Facts,
    policy: AttentionPolicy,
    campaigns: list[Campaign],
    ids: list[int],
    *,
    now: datetime,
) -> None:
    """Campaigns whose audience is not in the ledger yet, matched by their tags."""
    if not campaigns:
        return
    campaign_ids = [c.id for c in campaigns]
    have = set(
        session.connection()
        .execute(
            select(Delivery.subscriber_id, Delivery.campaign_id).where(
                in_list(session, Delivery.subscriber_id, ids),
                # by the batch's subscribers, not every row of a campaign being frozen
                in_list(session, unindexed(session, Delivery.campaign_id), campaign_ids),
            )
        )
        .all()
    )
    tags = _tags(session, facts)
    for campaign in campaigns:
        segment = Segment(tuple(campaign.include_tags or ()), tuple(campaign.exclude_tags or ()))
        for sid in ids:
            if (sid, campaign.id) in have or not segment.matches(tags.get(sid, ())):
                continue
            assert campaign.scheduled_at is not None
            at = campaign.scheduled_at
            if campaign.local_time is not None:
                wall = datetime.fromisoformat(campaign.local_time)
                at = resolve_local(wall, policy.zone(facts.zones.get(sid)))
            topic = policy.topic_of(campaign.item_id, campaign_topic=campaign.topic)
            if topic is not None and topic in facts.topics_off.get(sid, set()):
                continue
            facts.upcoming[sid].append(
                Upcoming(max(at, now), campaign.priority, f"campaign {campaign.name}")
            )


def _load_holds(
    session: Session, facts: _Facts, policy: AttentionPolicy, ids: list[int], *, now: datetime
) -> None:
    """The ``pause_drips`` campaigns of subscribers with a drip row in this batch."""
    if not ids:
        return
    near = (now - HOLD_NEAR, now + HOLD_NEAR)
    at = func.coalesce(Delivery.sent_at, Delivery.due_at)
    for sid, when, name, item_id, topic in session.connection().execute(
        select(Delivery.subscriber_id, at, Campaign.name, Campaign.item_id, Campaign.topic)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(
            in_list(session, Delivery.subscriber_id, ids),
            Delivery.kind == DeliveryKind.CAMPAIGN.value,
            Delivery.status.not_in([DeliveryStatus.SKIPPED.value, DeliveryStatus.FAILED.value]),
            at.between(*near),
            Campaign.pause_drips.is_(True),
            # a queued row holds while its campaign may still send it (not cancelled or stale)
            or_(
                Delivery.status != DeliveryStatus.QUEUED.value,
                Campaign.state.in_(HOLDING_CAMPAIGN_STATES),
            ),
        )
    ):
        if sid is None:
            continue  # pragma: no cover - filtered by the subscriber ids above
        hold = Hold(_aware(when), f"campaign {name}")
        facts.holds[sid].append((hold, policy.topic_of(item_id, campaign_topic=topic)))
    campaigns = session.scalars(
        select(Campaign).where(
            Campaign.pause_drips.is_(True),
            Campaign.audience_frozen.is_(False),
            Campaign.state.in_(HOLDING_CAMPAIGN_STATES),
            Campaign.scheduled_at.between(*near),
        )
    ).all()
    if not campaigns:
        return
    attributes: dict[int, dict[str, Any]] = dict(
        session.connection()
        .execute(
            select(Subscriber.id, Subscriber.attributes).where(in_list(session, Subscriber.id, ids))
        )
        .all()
    )
    tags = _tags(session, facts)
    for campaign in campaigns:
        segment = segment_from(
            campaign.include_tags or (), campaign.exclude_tags or (), campaign.where_attributes
        )
        topic = policy.topic_of(campaign.item_id, campaign_topic=campaign.topic)
        for sid in ids:
            if not segment.matches(tags.get(sid, ()), attributes.get(sid) or {}):
                continue
            assert campaign.scheduled_at is not None
            when = campaign.scheduled_at
            if campaign.local_time is not None:
                wall = datetime.fromisoformat(campaign.local_time)
                when = resolve_local(wall, policy.zone(facts.zones.get(sid)))
            facts.holds[sid].append((Hold(_aware(when), f"campaign {campaign.name}"), topic))


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _exempt(policy: AttentionPolicy, sequence: str | None, step: int | None) -> bool:
    rule = policy.sequences.get(sequence or "")
    return rule is not None and rule.first_exempt and step == 0


def _decide_one(
    subscriber_id: int,
    rows: list[Claimed],
    facts: _Facts,
    policy: AttentionPolicy,
    *,
    now: datetime,
) -> tuple[Decision, dict[int, str]]:
    off = facts.topics_off.get(subscriber_id, set())
    opted_out: dict[int, str] = {}
    candidates: list[Candidate] = []
    for row in rows:
        sequence = facts.sequences.get(row.enrollment_id) if row.enrollment_id else None
        campaign = facts.campaigns.get(row.campaign_id) if row.campaign_id else None
        topic = policy.topic_of(
            row.item_id, sequence=sequence, campaign_topic=campaign.topic if campaign else None
        )
        if topic is not None and topic in off:
            opted_out[row.id] = topic
            continue
        if row.kind == CAMPAIGN:
            priority = campaign.priority if campaign else 2
            stale = stale_limit(row.deferred_from or row.due_at, stale_hours=policy.stale_hours)
            candidates.append(
                Candidate(row.id, priority, row.due_at, stale_at=stale, label=row.item_id)
            )
        else:
            rule = policy.sequences.get(sequence or "")
            candidates.append(
                Candidate(
                    row.id,
                    policy.sequence_priority(sequence),
                    row.due_at,
                    exempt=_exempt(policy, sequence, row.step),
                    window=rule.window if rule else None,
                    label=row.item_id,
                    drip=True,
                )
            )
    holds = [
        h for h, topic in facts.holds.get(subscriber_id, []) if topic is None or topic not in off
    ]
    used = facts.used.get(subscriber_id, [])
    upcoming = facts.upcoming.get(subscriber_id, [])
    caps = policy.caps_for(facts.frequency.get(subscriber_id))
    if len(candidates) == 1 and sends_at_once(
        candidates[0], used=used, upcoming=upcoming, caps=caps, now=now, holds=holds
    ):
        # Most subscribers of a batch have one email and room for it: the same answer
        # as ``decide`` (tests/test_attention_core.py compares them), without its work.
        return Decision(send=[candidates[0].id]), opted_out
    decision = decide(
        candidates,
        used=used,
        upcoming=upcoming,
        caps=caps,
        zone=policy.zone(facts.zones.get(subscriber_id)),
        now=now,
        holds=holds,
    )
    return decision, opted_out


def _opted_out(topic: str) -> str:
    return f"opted out of topic {topic!r} in the preference centre"[:1000]


@dataclass
class _Writes:
    """What a claim's decisions change besides the leases, written for the whole batch at
    once: one executemany per kind of change (skipped, deferred) and one insert of the
    deferrals. A statement per row cost 390 us of the claim's write transaction per
    deferred email, which a campaign burst against a full cap has by the thousand."""

    skips: list[dict[str, Any]] = field(default_factory=list)
    defers: list[dict[str, Any]] = field(default_factory=list)
    deferrals: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        decision: Decision,
        opted_out: dict[int, str],
        rows: list[Claimed],
        subscriber_id: int,
        *,
        now: datetime,
    ) -> None:
        if not opted_out and not decision.skip and not decision.defer:
            return  # every row goes now: the claim leases them
        self.skips += [{"b_id": rid, "b_error": _opted_out(t)} for rid, t in opted_out.items()]
        self.skips += [{"b_id": s.id, "b_error": s.reason[:1000]} for s in decision.skip]
        due = {r.id: r.due_at for r in rows} if decision.defer else {}
        for d in decision.defer:
            self.defers.append(
                {
                    "b_id": d.id,
                    "b_due": d.until,
                    "b_from": due[d.id],
                    "b_error": f"deferred: {d.reason}"[:1000],
                }
            )
            self.deferrals.append(
                {
                    "delivery_id": d.id,
                    "subscriber_id": subscriber_id,
                    "at": now,
                    "until": d.until,
                    "reason": d.reason[:500],
                }
            )

    def flush(self, session: Session, *, now: datetime) -> None:
        """Write what ``add`` collected (in the caller's transaction)."""
        table = cast(Table, Delivery.__table__)
        connection = session.connection()
        if self.skips:
            connection.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    status=DeliveryStatus.SKIPPED.value,
                    error=bindparam("b_error"),
                    updated_at=now,
                ),
                self.skips,
            )
        if self.defers:
            connection.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    due_at=bindparam("b_due"),
                    # the first due time it was moved from, kept over later moves
                    deferred_from=func.coalesce(
                        table.c.deferred_from, bindparam("b_from", type_=UTCDateTime())
                    ),
                    error=bindparam("b_error"),
                    updated_at=now,
                ),
                self.defers,
            )
            connection.execute(insert(DeliveryDeferral), self.deferrals)


def policy_of(app: App) -> AttentionPolicy:
    """The app's policy, built once per ``App`` (settings and library do not change)."""
    policy = app.__dict__.get(_POLICY_KEY)
    if policy is None:
        policy = build_policy(app.settings, app.library)
        app.__dict__[_POLICY_KEY] = policy
    assert isinstance(policy, AttentionPolicy)
    return policy


def attention_for(app: App) -> Attention:
    """The claim-time hook for ``ledger.claim_batch``, with the app's policy."""
    ready = policy_of(app)

    def hook(session: Session, rows: list[Claimed], now: datetime) -> list[Claimed]:
        return apply_attention(session, rows, now=now, policy=ready)

    return hook


_POLICY_KEY = "_attention_policy"  # cached on the App instance (one per process)
