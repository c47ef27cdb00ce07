"""The ``plan-drips`` job: set-based planning over ``enrollments.next_due_at``.

An enrollment is in one of three states, all visible in the index on
``(status, next_due_at)``:

* ``active`` with ``next_due_at`` set: waiting for that time (the *plan* pass picks it up
  once ``next_due_at <= now``);
* ``active`` with ``next_due_at`` NULL: an item is planned and its delivery not yet final
  (the *advance* pass picks it up once the ledger row is ``sent``, ``failed``, ``unknown``
  or ``skipped``, and computes the next due time from the moment it was sent). It never
  scans the waiting enrollments: a trigger on ``deliveries`` (migration 0010) queues each
  drip row that becomes final in ``drip_outcomes``, in the transaction that records it,
  and the advance pass reads that queue and deletes what it handled;
* ``done`` / ``stopped``: never read again.

Each plan batch (``PLAN_BATCH`` rows) is one query that walks the index on ``(next_due_at,
id) WHERE status = 'active'`` in the batch's order, brings each subscriber's items already
had, and groups the rows in SQL: enrollments alike in every input of the decision
(subscriber status, sequence, position, last item, zone, items had) form one *situation*,
returned once with its size and its ids, and decided once with the pure functions of
``planning`` and ``timing``; Python handles situations, not rows. The batch is then
written in the *same* transaction: with few distinct decisions, one ``INSERT ... SELECT``
of ledger rows (key ``drip:<enrollment_id>:<item_id>``, ``drip_key``) and one ``UPDATE``
per group of enrollments sharing a decision (the id lists go back to SQL as the text the
database returned); with many, all rows at once as bound arrays
(``newsletter.drip.store``). Cost grows with the number of due (or just-sent)
enrollments, never with the size of the list.

Several planners may run at once: on PostgreSQL each batch takes the transaction-scoped
advisory lock ``pg_try_advisory_xact_lock``; a planner that does not get it stops at once
(another one is planning) - and the ledger key makes a second insert a no-op anyway.
Enrollment rows are read ``FOR UPDATE SKIP LOCKED`` so an unsubscribe that is writing the
same row is not overwritten. SQLite has one writer (``BEGIN IMMEDIATE``).

Decisions (copied into the README):

* "After the previous step": the next due time counts from the previous item's
  ``sent_at``. A ``failed`` item (permanent refusal, exhausted retries, render error)
  and an ``unknown`` one (fate unknown after a crash; it probably went out) count from the
  moment their fate was recorded, so one bad send does not freeze the sequence.
* ``pause_drips`` campaigns are not the planner's business: the claim holds a drip step
  on a local day such a campaign claims (``newsletter.attention``).
* A subscriber whose time zone is unknown is planned in ``NEWSLETTER_DEFAULT_TIMEZONE``
  (with one warning per zone name and process).
* An enrollment whose sequence file disappeared is retried a day later (with a warning),
  so restoring the file resumes it.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, bindparam, cast, delete, literal, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, TextClause

from newsletter.app import App
from newsletter.content.model import Sequence
from newsletter.db import transaction
from newsletter.drip.planning import NextSend, choose_next, rotation_pool
from newsletter.drip.store import (
    EnrollmentMove,
    IdList,
    PlannedRow,
    id_in,
    insert_for_enrollments,
    insert_planned,
    move_enrollments,
    move_group,
)
from newsletter.drip.timing import (
    in_window,
    next_in_window,
    step_due_at,
)
from newsletter.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    DripOutcome,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    UTCDateTime,
)
from newsletter.webhooks.emit import sequences_ended
from newsletter.zones import find_zone

log = logging.getLogger(__name__)

PLAN_BATCH = 10_000
ADVISORY_LOCK_KEY = 0x6E6C_6472_6970  # "nldrip": one drip planner at a time
FINAL = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.UNKNOWN.value,
    DeliveryStatus.SKIPPED.value,
)
HAD_KINDS = (DeliveryKind.DRIP.value, DeliveryKind.CAMPAIGN.value)
MISSING_SEQUENCE_RETRY = timedelta(days=1)
EXAMPLE_SKIP_REASON = "example content"


@dataclass
class PlanReport:
    advanced: int = 0  # enrollments given their next due time after a send
    planned: int = 0  # ledger rows written
    deferred: int = 0  # due outside the send window: moved to its next opening
    done: int = 0  # nothing left to send
    stopped: int = 0  # the subscriber is no longer active
    locked: bool = False  # another planner held the lock
    examples_skipped: int = 0  # example items recorded ``skipped``, never sent
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ZoneResolver:
    """IANA names to zones, the default zone for unknown names (warned once each)."""

    def __init__(self, default: str) -> None:
        self.default = ZoneInfo(default)
        self._cache: dict[str, tzinfo] = {}

    def __call__(self, name: str | None) -> tzinfo:
        key = name or ""
        zone = self._cache.get(key)
        if zone is None:
            found = find_zone(key) if key else self.default
            if found is None:
                log.warning("unknown time zone %r: planning drips in %s", key[:64], self.default)
            zone = found or self.default
            self._cache[key] = zone
        return zone


@dataclass(frozen=True)
class Catalog:
    """What the planner needs from the content library."""

    sequences: Mapping[str, Sequence]
    pool: Mapping[str, Seq[str]]
    examples: frozenset[str] = frozenset()  # items marked ``example: true``: never sent

    def decisive_items(self) -> list[str]:
        """Every item a plan decision can test a subscriber's history for: the steps of
        every sequence and the rotation candidates. Items outside it (campaign news, say)
        never change a decision, so the planner leaves them out of a situation."""
        steps = {step.item_id for s in self.sequences.values() for step in s.steps}
        return sorted(steps.union(*self.pool.values()))

    @classmethod
    def from_app(cls, app: App) -> Catalog:
        library = app.library
        items = [i.id for i in library.items() if not i.transactional]
        kinds = {kind for s in library.sequences() if s.then for kind in s.then.kinds}
        examples = frozenset(i.id for i in library.items() if i.example)
        return cls({s.name: s for s in library.sequences()}, rotation_pool(items, kinds), examples)


@dataclass
class _Context:
    catalog: Catalog
    zones: ZoneResolver
    now: datetime
    report: PlanReport = field(default_factory=PlanReport)
    missing: set[str] = field(default_factory=set)
    decisive: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.decisive = self.catalog.decisive_items()


def plan_drips(
    app: App, now: datetime, *, batch_size: int = PLAN_BATCH, catalog: Catalog | None = None
) -> dict[str, Any]:
    """One planner pass: advance enrollments whose item was sent, then plan due ones."""
    ctx = _Context(
        catalog or Catalog.from_app(app), ZoneResolver(app.settings.default_timezone), now
    )
    for step in (_advance_batch, _plan_batch):
        while True:
            with transaction(app.sessions) as session:
                if not _lock(session):
                    ctx.report.locked = True
                    return ctx.report.as_dict()
                count = step(session, ctx, batch_size)
            ctx.report.batches += 1
            if count < batch_size:
                break
    if ctx.missing:
        log.warning(
            "enrollments in unknown sequences %s were put off by a day; restore the files "
            "in content/sequences/ or the enrollments stay waiting",
            sorted(ctx.missing),
        )
    return ctx.report.as_dict()


def _lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: BEGIN IMMEDIATE already made this the only writer
    # A batch's statements are estimated above ``jit_above_cost`` (the row lock over every
    # due row) and each compiled again per batch: ~50 ms of JIT for a 250 ms read.
    session.execute(text("SET LOCAL jit = off"))
    return bool(
        session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    )


def _for_update(session: Session, statement: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update(of=Enrollment, skip_locked=True)
    return statement


# ---- advance: an item reached its final state -> when is the next one due? ----------------


def _advance_batch(session: Session, ctx: _Context, batch_size: int) -> int:
    """Advance the enrollments of one batch of ``drip_outcomes`` (queued by the ledger's
    trigger when a drip row became final); return how many queue rows were handled. Rows
    whose enrollment another transaction holds stay queued for the next pass."""
    queue = session.execute(
        select(DripOutcome.id, DripOutcome.enrollment_id).order_by(DripOutcome.id).limit(batch_size)
    ).all()
    if not queue:
        return 0
    wanted = sorted({q.enrollment_id for q in queue})
    held = _locked_elsewhere(session, wanted)
    mine = [i for i in wanted if i not in held]
    handled = [q.id for q in queue if q.enrollment_id not in held]
    session.execute(delete(DripOutcome).where(id_in(session, DripOutcome.id, handled)))
    if mine:
        _advance(session, ctx, mine)
    return len(handled) if not held else 0


def _locked_elsewhere(session: Session, ids: Seq[int]) -> set[int]:
    """The enrollments among ``ids`` another transaction holds (PostgreSQL); the others are
    locked for this one. SQLite has one writer: none."""
    if session.get_bind().dialect.name != "postgresql":
        return set()
    statement = select(Enrollment.id).where(id_in(session, Enrollment.id, ids))
    locked = set(session.scalars(_for_update(session, statement)))
    if len(locked) == len(ids):
        return set()
    existing = set(session.scalars(statement))
    return existing - locked


def _advance(session: Session, ctx: _Context, enrollment_ids: Seq[int]) -> None:
    statement = (
        select(
            Enrollment.id,
            Enrollment.subscriber_id,
            Enrollment.sequence,
            Enrollment.position,
            Enrollment.last_item_id,
            Subscriber.timezone,
            Delivery.status,
            Delivery.sent_at,
            Delivery.updated_at,
        )
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        # Joined on the ledger key (unique index): the row the enrollment waits on.
        .join(Delivery, Delivery.key == _key_sql())
        .where(
            id_in(session, Enrollment.id, enrollment_ids),
            Enrollment.status == EnrollmentStatus.ACTIVE.value,
            Enrollment.next_due_at.is_(None),
            Delivery.status.in_(FINAL),
        )
        .order_by(Enrollment.id)
    )
    rows = session.execute(statement).all()
    if not rows:
        return
    had = _had(session, (r.subscriber_id for r in rows))
    changes: list[dict[str, Any]] = []
    for row in rows:
        sent_at = row.sent_at if row.status == DeliveryStatus.SENT.value else None
        base = sent_at or row.updated_at
        change: dict[str, Any] = {"id": row.id, "last_sent_at": sent_at or base}
        sequence = ctx.catalog.sequences.get(row.sequence)
        if sequence is None:
            ctx.missing.add(row.sequence)
            change["next_due_at"] = base + MISSING_SEQUENCE_RETRY
        else:
            nxt = _choose(sequence, row, had, ctx)
            if nxt is None:
                change["status"] = EnrollmentStatus.DONE.value
                ctx.report.done += 1
            else:
                zone = ctx.zones(row.timezone)
                change["next_due_at"] = step_due_at(base, nxt.delay, zone, sequence.send_window)
        changes.append(change)
    _update_enrollments(session, changes)
    _report_ends(session, rows, changes, now=ctx.now)
    ctx.report.advanced += len(rows)


def _report_ends(
    session: Session, rows: Seq[Any], changes: list[dict[str, Any]], *, now: datetime
) -> None:
    """Webhook events for enrollments this batch finished (``done``) or stopped."""
    by_id = {r.id: r for r in rows}
    for status, type in (
        (EnrollmentStatus.DONE.value, "sequence.completed"),
        (EnrollmentStatus.STOPPED.value, "sequence.exited"),
    ):
        ended = [
            (by_id[c["id"]].subscriber_id, by_id[c["id"]].sequence)
            for c in changes
            if c.get("status") == status
        ]
        reason = "subscriber_inactive" if status == EnrollmentStatus.STOPPED.value else None
        sequences_ended(session, type, ended, now=now, reason=reason)


# ---- plan: an enrollment is due -> write its ledger row ------------------------------------


def _plan_batch(session: Session, ctx: _Context, batch_size: int) -> int:
    postgres = session.get_bind().dialect.name == "postgresql"
    groups = session.execute(
        _situations_sql(session),
        {
            "now": ctx.now,
            "limit": batch_size,
            "sep": _SEPARATOR,
            "decisive": ctx.decisive if postgres else json.dumps(ctx.decisive),
        },
    ).all()
    if not groups:
        return 0
    had_sets: dict[str | None, frozenset[str]] = {None: _NOTHING}
    # Decided once per situation: the query grouped the batch's rows alike in every input
    # of the decision; situations that decide alike are written together.
    decisions: dict[_Situation, _Decision] = {}
    members: dict[_Decision, list[_Group]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for row in groups:
        seen = had_sets.get(row.had)
        if seen is None:
            seen = had_sets[row.had] = frozenset(row.had.split(_SEPARATOR))
        situation = _Situation(
            row.subscriber_status, row.sequence, row.position, row.last_item_id, row.timezone, seen
        )
        decision = decisions.get(situation)
        if decision is None:
            decision = decisions[situation] = _decide(situation, ctx)
        counts[decision.outcome] += row.size
        total += row.size
        members[decision].append(_Group(situation, row.size, IdList(row.ids), row.sids))
    report = ctx.report
    report.stopped += counts["stopped"]
    report.deferred += counts["deferred"]
    report.done += counts["done"]
    if len(members) <= GROUPED_WRITES:
        _write_groups(session, members, ctx)
    else:
        _write_rows(session, members, ctx)
    _report_plan_ends(session, members, now=ctx.now)
    return total


@dataclass(frozen=True)
class _Group:
    """The enrollments of one batch in one situation (ids as the database listed them)."""

    situation: _Situation
    size: int
    ids: IdList
    subscriber_ids: str  # comma-separated, in the order of ``ids``


def _situations_sql(session: Session) -> TextClause:
    """One batch of due enrollments (``PLAN_BATCH`` in ``(next_due_at, id)`` order, the
    partial index's order), grouped by situation: each subscriber's items already had
    (those of ``:decisive`` only) are read by one probe of
    ``ix_deliveries_subscriber_item_kind``, from the index alone (it holds ``kind``),
    and joined by ``:sep`` in item order, and every group lists its enrollment and
    subscriber ids."""
    if session.get_bind().dialect.name == "postgresql":
        had = "string_agg(d.item_id, :sep ORDER BY d.item_id)"
        ids, sids = (
            "string_agg(id::text, ',' ORDER BY id)",
            "string_agg(sid::text, ',' ORDER BY id)",
        )
        lock = "FOR UPDATE OF e SKIP LOCKED"
        materialized = "MATERIALIZED"
        decisive = "= ANY(CAST(:decisive AS text[]))"
        plus = ""
    else:
        # SQLite: rows of one group are aggregated in one order for both lists; items come
        # from the index in item order.
        had = "group_concat(d.item_id, :sep)"
        ids, sids = "group_concat(id)", "group_concat(sid)"
        lock = ""
        materialized = ""
        # ``+``: not an index constraint, or SQLite probes the index once per item.
        decisive = "IN (SELECT value FROM json_each(:decisive))"
        plus = "+"
    kinds = ", ".join(f"'{kind}'" for kind in HAD_KINDS)
    # One CTE, materialized by its LIMIT (and FOR UPDATE): each row's subquery runs once.
    return text(
        f"WITH batch AS {materialized} (SELECT e.id, e.subscriber_id AS sid, e.sequence, "  # noqa: S608 - constant SQL
        "e.position, e.last_item_id, s.status AS subscriber_status, s.timezone, "
        f"(SELECT {had} FROM deliveries AS d WHERE d.subscriber_id = e.subscriber_id "
        f"AND d.kind IN ({kinds}) AND {plus}d.item_id {decisive}) AS had "
        "FROM enrollments AS e JOIN subscribers AS s ON s.id = e.subscriber_id "
        "WHERE e.status = 'active' AND e.next_due_at <= :now "
        f"ORDER BY e.next_due_at, e.id LIMIT :limit {lock}) "
        "SELECT subscriber_status, sequence, position, last_item_id, timezone, had, "
        f"count(*) AS size, {ids} AS ids, {sids} AS sids FROM batch "
        "GROUP BY subscriber_status, sequence, position, last_item_id, timezone, had"
    ).bindparams(bindparam("now", type_=UTCDateTime()))


def _report_plan_ends(
    session: Session, members: Mapping[_Decision, list[_Group]], *, now: datetime
) -> None:
    """Webhook events for the enrollments a plan batch finished (``done``) or stopped."""
    for status, type in (
        (EnrollmentStatus.DONE.value, "sequence.completed"),
        (EnrollmentStatus.STOPPED.value, "sequence.exited"),
    ):
        ended = [
            (subscriber_id, group.situation.sequence)
            for decision, groups in members.items()
            if decision.status == status
            for group in groups
            for subscriber_id in IdList(group.subscriber_ids).ints()
        ]
        reason = "subscriber_inactive" if status == EnrollmentStatus.STOPPED.value else None
        if ended:
            sequences_ended(session, type, ended, now=now, reason=reason)


_NOTHING: frozenset[str] = frozenset()
# Up to this many distinct decisions in a batch, each group of enrollments sharing one is
# written with one INSERT ... SELECT and one UPDATE; beyond, rows go out as arrays.
GROUPED_WRITES = 64


def _write_groups(
    session: Session, members: Mapping[_Decision, list[_Group]], ctx: _Context
) -> None:
    report = ctx.report
    for decision, groups in members.items():
        ids = groups[0].ids
        for group in groups[1:]:
            ids += group.ids
        for send in decision.skipped:
            report.examples_skipped += insert_for_enrollments(
                session,
                ids,
                item_id=send.item_id,
                step=send.step,
                skipped_reason=EXAMPLE_SKIP_REASON,
                now=ctx.now,
            )
        if decision.send is not None:
            report.planned += insert_for_enrollments(
                session,
                ids,
                item_id=decision.send.item_id,
                step=decision.send.step,
                skipped_reason=None,
                now=ctx.now,
            )
        move_group(
            session,
            ids,
            status=decision.status,
            next_due_at=decision.next_due_at,
            position=decision.send.position if decision.send else None,
            last_item_id=decision.send.item_id if decision.send else None,
        )


def _write_rows(session: Session, members: Mapping[_Decision, list[_Group]], ctx: _Context) -> None:
    moves: list[EnrollmentMove] = []
    skipped: list[PlannedRow] = []
    planned: list[PlannedRow] = []
    for decision, groups in members.items():
        for group in groups:
            subscriber_ids = IdList(group.subscriber_ids).ints()
            for enrollment_id, subscriber_id in zip(group.ids.ints(), subscriber_ids, strict=True):
                moves.append(decision.move(enrollment_id, group.situation))
                skipped.extend(
                    decision.rows(
                        enrollment_id, subscriber_id, decision.skipped, EXAMPLE_SKIP_REASON
                    )
                )
                if decision.send is not None:
                    planned.extend(
                        decision.rows(enrollment_id, subscriber_id, (decision.send,), None)
                    )
    ctx.report.examples_skipped += insert_planned(session, skipped, now=ctx.now)
    ctx.report.planned += insert_planned(session, planned, now=ctx.now)
    move_enrollments(session, moves)


@dataclass(frozen=True)
class _Situation:
    """Everything the plan decision for one enrollment depends on (besides ``now``)."""

    subscriber_status: str
    sequence: str
    position: int
    last_item_id: str | None
    timezone: str | None
    had: frozenset[str]


@dataclass(frozen=True)
class _Decision:
    """What planning decides for one situation; the same for every enrollment in it."""

    outcome: str  # the report counter it adds to: planned, deferred, done, stopped
    status: str  # the enrollment's status afterwards
    next_due_at: datetime | None
    send: NextSend | None = None  # the item planned now
    skipped: tuple[NextSend, ...] = ()  # example items recorded ``skipped`` on the way

    def move(self, enrollment_id: int, situation: _Situation) -> EnrollmentMove:
        position, last = situation.position, situation.last_item_id
        if self.send is not None:
            position, last = self.send.position, self.send.item_id
        return EnrollmentMove(enrollment_id, self.status, position, last, self.next_due_at)

    @staticmethod
    def rows(
        enrollment_id: int, subscriber_id: int, sends: Seq[NextSend], reason: str | None
    ) -> list[PlannedRow]:
        return [PlannedRow(enrollment_id, subscriber_id, s.item_id, s.step, reason) for s in sends]


_ACTIVE = EnrollmentStatus.ACTIVE.value


def _decide(s: _Situation, ctx: _Context) -> _Decision:
    """The plan decision for one due enrollment in situation ``s`` at ``ctx.now``."""
    now = ctx.now
    if s.subscriber_status != SubscriberStatus.ACTIVE.value:
        return _Decision("stopped", EnrollmentStatus.STOPPED.value, None)
    sequence = ctx.catalog.sequences.get(s.sequence)
    if sequence is None:
        ctx.missing.add(s.sequence)
        return _Decision("missing", _ACTIVE, now + MISSING_SEQUENCE_RETRY)
    nxt = choose_next(
        sequence,
        last_item_id=s.last_item_id,
        position=s.position,
        had=s.had,
        pool=ctx.catalog.pool,
    )
    first = s.last_item_id is None
    if nxt is not None and not first:
        zone = ctx.zones(s.timezone)
        window = sequence.send_window
        if not in_window(now, zone, window):
            return _Decision("deferred", _ACTIVE, next_in_window(now, zone, window))
    skipped, nxt = _past_examples(sequence, nxt, s.had, ctx)
    if nxt is None:
        return _Decision("done", EnrollmentStatus.DONE.value, None, skipped=tuple(skipped))
    return _Decision("planned", _ACTIVE, None, send=nxt, skipped=tuple(skipped))


def _past_examples(
    sequence: Sequence,
    nxt: NextSend | None,
    had: frozenset[str],
    ctx: _Context,
) -> tuple[list[NextSend], NextSend | None]:
    """Example items are never sent: each gets a ``skipped`` ledger row ("example
    content") and the sequence moves on to the next item in the same pass, so the
    subscriber's cadence stays as if the example were not in the sequence."""
    skipped: list[NextSend] = []
    seen = set(had)
    while nxt is not None and nxt.item_id in ctx.catalog.examples:
        skipped.append(nxt)
        seen.add(nxt.item_id)
        nxt = choose_next(
            sequence,
            last_item_id=nxt.item_id,
            position=nxt.position,
            had=seen,
            pool=ctx.catalog.pool,
        )
    return skipped, nxt


def drip_key(enrollment_id: int, item_id: str) -> str:
    """The ledger key of one item for one enrollment: what makes it go out once."""
    return f"drip:{enrollment_id}:{item_id}"


def _key_sql() -> ColumnElement[str]:
    """``drip_key`` in SQL, for the enrollment's last planned item."""
    return literal("drip:") + cast(Enrollment.id, String) + ":" + Enrollment.last_item_id


def _choose(
    sequence: Sequence, row: Any, had: Mapping[int, set[str]], ctx: _Context
) -> NextSend | None:
    return choose_next(
        sequence,
        last_item_id=row.last_item_id,
        position=row.position,
        had=had.get(row.subscriber_id, set()),
        pool=ctx.catalog.pool,
    )


_SEPARATOR = "\n"  # between item ids in ``_situations_sql`` (ids are paths: never one inside)


def _had(session: Session, subscriber_ids: Iterable[int]) -> dict[int, set[str]]:
    """Every item each subscriber has a drip or campaign ledger row for."""
    ids = sorted(set(subscriber_ids))
    had: dict[int, set[str]] = defaultdict(set)
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.item_id).where(
            id_in(session, Delivery.subscriber_id, ids), Delivery.kind.in_(HAD_KINDS)
        )
    ).all()
    for subscriber_id, item_id in rows:
        if subscriber_id is not None:
            had[subscriber_id].add(item_id)
    return had


def _update_enrollments(session: Session, changes: list[dict[str, Any]]) -> None:
    """One executemany per set of changed columns (UPDATE ... WHERE id = ?)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        groups[tuple(sorted(change))].append(change)
    for group in groups.values():
        session.execute(update(Enrollment), group)


def earliest_due(session: Session, *, after: datetime) -> datetime | None:
    """The earliest ``next_due_at`` later than ``after`` of an active enrollment (one
    index probe): when the planner next has something to do."""
    return session.scalar(
        select(Enrollment.next_due_at)
        .where(Enrollment.status == EnrollmentStatus.ACTIVE.value, Enrollment.next_due_at > after)
        .order_by(Enrollment.next_due_at)
        .limit(1)
    )
