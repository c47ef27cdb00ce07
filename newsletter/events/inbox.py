"""The SendGrid event inbox: a verified body is stored as received; a drain applies it.

The webhook request does the least that makes the answer true: the signature is checked,
the body must look like a JSON array (``check_body``; else 400 and nothing is stored), and
``accept`` stores the raw body as one ``event_inbox`` row and commits -- durable before
SendGrid hears 200. Parsing, storing each event once, suppressions and reconciliation
(``newsletter.events.store``) happen in ``drain``, run by a thread of the web process
right after the answer and by the worker's ``events`` job.

* **Exactly once.** A body is marked applied (``applied_at``, with its counts in
  ``report``) in the transaction that stores its events and acts on them; a crash before
  the commit leaves it pending and the next drain applies it again, from scratch. Two
  drains never take the same body: on PostgreSQL a drain locks the rows it takes
  (``FOR UPDATE SKIP LOCKED``: another drain takes the next ones); on SQLite a drain reads
  them inside its ``BEGIN IMMEDIATE`` write transaction. The events themselves are stored
  once whatever happens (unique ``sg_event_id`` and logical key), so SendGrid's retries
  and replays act once too.
* **No poison.** Each body is applied under a savepoint. A body that fails for a reason
  a retry will not cure (not an event batch, a value the database refuses) gets its
  ``problem`` -- the error's type and message -- and is skipped; the bodies around it are
  applied. ``newsletter events inbox`` lists such bodies. A database that is down or busy
  is not the body's fault: the drain stops and leaves everything pending.
* **Personal data.** The raw body holds addresses and IPs, which the stored events do not
  keep: an applied body is emptied in the same transaction. A body with a problem keeps
  its bytes (to look at, or to retry with ``newsletter events inbox --retry``), except
  the addresses ``forget`` erased (``forget_address``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.errors import NewsletterError
from newsletter.events.parsing import EventPayloadError, parse_batch
from newsletter.events.redaction import redact_address
from newsletter.events.store import store_events
from newsletter.json_input import JsonInputError, load_json
from newsletter.models import EventInbox

log = logging.getLogger(__name__)

# PostgreSQL: one body per drain transaction. Each body's statements lock rows in one order
# (events by logical key, deliveries and subscribers by id), so concurrent drains (the web
# process's, the worker's job) queue on each other; two bodies in one transaction would take
# two such sequences and could deadlock with another drain.
# SQLite: one too. Transactions are serialized whole (``BEGIN IMMEDIATE``), so several
# bodies per commit could not deadlock and would share the commit's dirtied index pages
# (~30 ms per body at 300k stored events), but measured with 8 (taken only while no
# webhook request was in flight): a request arriving during such a transaction waited up
# to 2.9 s for the single writer, and the acceptance rate fell from 0.20 to 0.06 of the
# verify-only app. ``busy`` keeps the knob for a larger value.
POSTGRES_BODIES = 1
SQLITE_BODIES = 1
# Pruning: rows deleted per transaction, and transactions per ``events`` run (a backlog,
# as after the upgrade that brought pruning, is worked off over several runs).
PRUNE_BATCH = 1000
PRUNE_MAX_BATCHES = 100
# The database is unreachable, busy or chose this drain as a deadlock victim: not the
# body's fault, so it stays pending.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeoutError)
_JSON_SPACE = b" \t\n\r"
_EDGE = 64  # bytes looked at from each end; more whitespace than that: parsed instead
_TABLE = cast(Table, EventInbox.__table__)
_PENDING = (_TABLE.c.applied_at.is_(None), _TABLE.c.problem.is_(None))


@dataclass(frozen=True)
class DrainReport:
    bodies: int = 0  # applied
    problems: int = 0  # kept with a problem, skipped
    counts: dict[str, int] = field(default_factory=dict)  # summed ``IngestReport`` counts

    def plus(self, other: DrainReport) -> DrainReport:
        counts = dict(self.counts)
        for key, value in other.counts.items():
            counts[key] = counts.get(key, 0) + value
        return DrainReport(self.bodies + other.bodies, self.problems + other.problems, counts)

    @property
    def taken(self) -> int:
        return self.bodies + self.problems


@dataclass(frozen=True)
class InboxRow:
    id: int
    received_at: datetime
    problem: str | None
    size: int


def check_body(body: bytes) -> None:
    """Refuse (``EventPayloadError``) a body that is not shaped like a JSON array.

    Cheap on purpose: a body that starts with ``[`` and ends with ``]`` (JSON whitespace
    around them allowed) is accepted unparsed -- the request's cost is then the signature
    check and one insert. Any other body is parsed with ``parse_batch``'s JSON rules
    (``load_json``) for a precise message: not JSON, or JSON but not an array. A body that
    is shaped like an array but is not valid JSON inside reaches the drain, which keeps it
    aside with that problem (``apply_pending``)."""
    if body[:_EDGE].lstrip(_JSON_SPACE).startswith(b"[") and body[-_EDGE:].rstrip(
        _JSON_SPACE
    ).endswith(b"]"):
        return
    try:
        data = load_json(body)
    except JsonInputError as exc:
        raise EventPayloadError(str(exc)) from None
    if not isinstance(data, list):
        raise EventPayloadError("the body must be a JSON array of SendGrid events")


def accept(app: App, body: bytes, *, now: datetime) -> int:
    """Store a verified body for the drain; committed when this returns. Its row id."""
    with transaction(app.sessions) as session:
        return store_body(session, body, now=now)


def store_body(session: Session, body: bytes, *, now: datetime) -> int:
    """Insert one pending body (does not commit); its row id."""
    statement = insert(_TABLE).values(body=body, received_at=now).returning(_TABLE.c.id)
    return int(session.execute(statement).scalar_one())


def drain(
    app: App,
    *,
    now: datetime,
    pause: Callable[[], None] = lambda: None,
    busy: Callable[[], bool] = lambda: False,
    stop: Callable[[], bool] = lambda: False,
) -> DrainReport:
    """Apply every pending body, oldest first, calling ``pause()`` between transactions
    (bodies per transaction: ``POSTGRES_BODIES``, ``SQLITE_BODIES`` or one while ``busy()``),
    until none is left or ``stop()`` (checked after each commit: a process shutting down).
    Raises the database's error if it is unreachable or a deadlock victim (everything not
    yet committed stays pending for the next drain)."""
    several = POSTGRES_BODIES if app.engine.dialect.name == "postgresql" else SQLITE_BODIES
    total = DrainReport()
    while True:
        report = drain_once(app, now=now, limit=1 if busy() else several)
        total = total.plus(report)
        if not report.taken or stop():
            return total
        pause()


def drain_once(app: App, *, now: datetime, limit: int) -> DrainReport:
    """Take up to ``limit`` pending bodies and apply them in one transaction."""
    with transaction(app.sessions) as session:
        return apply_pending(session, now=now, limit=limit)


def apply_pending(session: Session, *, now: datetime, limit: int) -> DrainReport:
    """Take up to ``limit`` pending bodies no other drain holds and apply each (does not
    commit: the caller's commit makes the events and the ``applied_at`` marks one)."""
    query = select(_TABLE.c.id, _TABLE.c.body).where(*_PENDING).order_by(_TABLE.c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    total = DrainReport()
    for row_id, body in session.execute(query).all():
        total = total.plus(_apply_one(session, row_id, bytes(body), now=now))
    return total


def _apply_one(session: Session, row_id: int, body: bytes, *, now: datetime) -> DrainReport:
    try:
        with session.begin_nested():
            batch = parse_batch(body)
            report = store_events(session, batch.events, now=now)
            counts = {
                **report.as_dict(),
                "received": report.received + len(batch.ignored),
                "ignored": len(batch.ignored),
            }
            session.execute(
                update(_TABLE)
                .where(_TABLE.c.id == row_id)
                .values(applied_at=now, body=b"", report=counts)
            )
    except TRANSIENT:
        raise
    except (NewsletterError, SQLAlchemyError, ValueError, TypeError, LookupError) as exc:
        problem = f"{type(exc).__name__}: {_first_line(exc)}"
        log.error("sendgrid event inbox: body %d not applied, kept aside: %s", row_id, problem)
        session.execute(update(_TABLE).where(_TABLE.c.id == row_id).values(problem=problem))
        return DrainReport(problems=1)
    for reason in batch.ignored[:10]:
        log.warning("sendgrid webhook: body %d: ignored %s", row_id, reason)
    return DrainReport(bodies=1, counts=counts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "no message")[:500]


def inbox_rows(session: Session, *, problems_only: bool = False) -> list[InboxRow]:
    """Bodies not applied (pending, or kept with a problem), oldest first."""
    size = func.length(_TABLE.c.body)  # bytes on both databases; the bodies stay there
    query = select(_TABLE.c.id, _TABLE.c.received_at, _TABLE.c.problem, size).where(
        _TABLE.c.applied_at.is_(None)
    )
    if problems_only:
        query = query.where(_TABLE.c.problem.is_not(None))
    rows = session.execute(query.order_by(_TABLE.c.id)).all()
    return [InboxRow(r[0], r[1], r[2], int(r[3])) for r in rows]


@dataclass(frozen=True)
class PruneReport:
    applied: int = 0  # applied bodies deleted
    problems: int = 0  # bodies kept with a problem deleted
    done: bool = True  # False: ``max_batches`` ran out with more to delete (the next run goes on)


def prune(
    app: App,
    *,
    now: datetime,
    applied_days: int,
    problem_days: int,
    batch: int = PRUNE_BATCH,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> PruneReport:
    """Delete applied bodies applied more than ``applied_days`` before ``now``, then bodies
    kept with a problem received more than ``problem_days`` before it, ``batch`` rows per
    transaction (never one long transaction holding the table), at most ``max_batches``
    transactions in all. Pending bodies are never deleted."""
    applied = _TABLE.c.applied_at < now - timedelta(days=applied_days)
    kept = (
        _TABLE.c.applied_at.is_(None),  # the few rows not applied (``ix_event_inbox_applied_at``)
        _TABLE.c.problem.is_not(None),
        _TABLE.c.received_at < now - timedelta(days=problem_days),
    )
    kinds = (
        select(_TABLE.c.id).where(applied).order_by(_TABLE.c.applied_at),
        select(_TABLE.c.id).where(*kept).order_by(_TABLE.c.id),
    )
    deleted = [0, 0]
    batches = 0
    for kind, oldest_first in enumerate(kinds):
        while True:
            if batches == max_batches:
                return PruneReport(deleted[0], deleted[1], done=False)
            batches += 1
            oldest = oldest_first.limit(batch)
            with transaction(app.sessions) as session:
                result: Any = session.execute(delete(_TABLE).where(_TABLE.c.id.in_(oldest)))
            deleted[kind] += int(result.rowcount)
            if result.rowcount < batch:
                break
    return PruneReport(deleted[0], deleted[1])


def forget_address(session: Session, email: str) -> int:
    """Erase ``email`` (normalised) from every body not applied yet, pending or kept with a
    problem (``redact_address``; does not commit); how many bodies changed.

    Applied bodies are empty already. A pending body is redacted too rather than applied
    here (``forget`` would otherwise wait for a backlog the drain has not reached): its
    other events are applied later as they would have been, the address's own without it.
    On PostgreSQL the rows are locked (``FOR UPDATE``, waiting for a drain applying one:
    it is then applied and empty, and left out); a drain skips them until the commit."""
    query = select(_TABLE.c.id, _TABLE.c.body).where(_TABLE.c.applied_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    changed = 0
    for row_id, body in session.execute(query.order_by(_TABLE.c.id)).all():
        kept = bytes(body)
        redacted = redact_address(kept, email)
        if redacted != kept:
            session.execute(update(_TABLE).where(_TABLE.c.id == row_id).values(body=redacted))
            changed += 1
    return changed


def retry(session: Session, ids: Sequence[int]) -> int:
    """Make bodies kept with a problem pending again; how many were."""
    result: Any = session.execute(
        update(_TABLE)
        .where(_TABLE.c.id.in_(list(ids)), _TABLE.c.problem.is_not(None))
        .values(problem=None)
    )
    return int(result.rowcount)
