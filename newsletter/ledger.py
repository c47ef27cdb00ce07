"""The ``deliveries`` ledger: enqueue once, claim in batches, record outcomes.

Life of a row::

    queued --claim--> leased --handed to provider--> sending --outcome--> sent | failed
       ^                 |                               |                 | queued (retry)
       +--lease expired--+                               +--lease expired--> unknown

A row is *written before any provider call* and its unique ``key`` makes the send happen
once. ``leased`` rows whose lease expired were never handed over and go back to
``queued``; ``sending`` rows whose lease expired may or may not have reached the provider
and become ``unknown``: they are never resent automatically (policy in README,
"Delivery semantics"). SendGrid events carrying the delivery id turn them into ``sent``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.addresses import email_hash
from newsletter.backoff import bounded_wait, retry_delay
from newsletter.bound_lists import in_list, not_in_list, unindexed
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.models import (
    Campaign,
    CampaignState,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    UTCDateTime,
)
from newsletter.webhooks.emit import emails_settled, listened

# Seconds before a row that was never shown to the provider (the batch stopped before
# it) is due again, when the provider gave no Retry-After.
NOT_ATTEMPTED_DELAY = 60.0


@dataclass(frozen=True)
class NewDelivery:
    key: str
    kind: DeliveryKind
    item_id: str
    due_at: datetime
    subscriber_id: int | None = None
    to_email: str | None = None
    campaign_id: int | None = None
    enrollment_id: int | None = None
    step: int | None = None
    # Set for a row that is recorded but never sent (e.g. "example content"): it is
    # written ``skipped`` with this reason, so the ledger shows why nothing went out.
    skipped_reason: str | None = None


def worker_name(role: str) -> str:
    """A ``leased_by`` that no other process shares: ``role:host:pid``, read when called
    (after any fork). ``mark_sending`` and ``record_results`` trust the name: two processes
    under one name could each act on the other's claim, so a row whose lease expired and was
    claimed again could be sent twice."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


def enqueue(session: Session, rows: Sequence[NewDelivery], *, now: datetime) -> int:
    """Insert rows whose key is new; return how many were inserted. Does not commit."""
    if not rows:
        return 0
    values = [
        {
            "key": r.key,
            "kind": r.kind.value,
            "item_id": r.item_id,
            "due_at": r.due_at,
            "subscriber_id": r.subscriber_id,
            "to_email": r.to_email,
            "campaign_id": r.campaign_id,
            "enrollment_id": r.enrollment_id,
            "step": r.step,
            "status": (
                DeliveryStatus.SKIPPED.value if r.skipped_reason else DeliveryStatus.QUEUED.value
            ),
            "error": r.skipped_reason,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for r in rows
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Delivery).on_conflict_do_nothing(index_elements=["key"])
    result = session.execute(statement.returning(Delivery.id), values)
    return len(result.all())


def _eligible_marketing() -> ColumnElement[bool]:
    """SQL condition: the delivery may still go out at claim time."""
    subscriber_ok = exists().where(
        Subscriber.id == Delivery.subscriber_id,
        or_(
            Subscriber.status == SubscriberStatus.ACTIVE.value,
            and_(
                Delivery.kind == DeliveryKind.CONFIRMATION.value,
                Subscriber.status.in_(
                    [SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value]
                ),
            ),
        ),
    )
    campaign_ok = or_(
        Delivery.campaign_id.is_(None),
        Delivery.kind == DeliveryKind.TEST.value,
        exists().where(
            Campaign.id == Delivery.campaign_id,
            Campaign.state == CampaignState.SENDING.value,
        ),
    )
    # A drip step whose enrollment exited (``exit:`` trigger, ``sequence exit``) is skipped.
    enrollment_ok = or_(
        Delivery.enrollment_id.is_(None),
        ~exists().where(
            Enrollment.id == Delivery.enrollment_id,
            Enrollment.status == EnrollmentStatus.EXITED.value,
        ),
    )
    return and_(
        or_(Delivery.kind == DeliveryKind.TEST.value, subscriber_ok), campaign_ok, enrollment_ok
    )


@dataclass(slots=True)
class Claimed:
    """A claimed ``deliveries`` row: its columns as the claim left them (plain values, not
    an ORM object: a thousand ORM objects per batch cost more than the claim's SQL).

    Field names are the table's column names (``test_ledger_claims`` checks they match)."""

    id: int
    key: str
    kind: str
    subscriber_id: int | None
    to_email: str | None
    item_id: str
    campaign_id: int | None
    enrollment_id: int | None
    step: int | None
    status: str
    attempts: int
    due_at: datetime
    lease_expires_at: datetime | None
    leased_by: str | None
    provider_message_id: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    message_nonce: str | None
    deferred_from: datetime | None


_CLAIMED = tuple(f.name for f in fields(Claimed))  # the claim's columns, in field order

# Decides, at claim time, which of the eligible rows go now (newsletter.attention.claims):
# returns those; defers or skips the others in the same transaction.
Attention = Callable[[Session, list[Claimed], datetime], list[Claimed]]
# A batch the attention rules wholly deferred is followed by another claim in the same
# transaction (the deferred rows are no longer due), at most this many times.
ATTENTION_ROUNDS = 20


def claim_batch(
    session: Session,
    *,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    kinds: Sequence[DeliveryKind] | None = None,
    attention: Attention | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due rows for ``worker``. The caller commits once.

    Rows whose subscriber left or whose address is suppressed, or whose campaign was
    cancelled, are marked ``skipped`` in the same transaction. Paused campaigns' rows are
    left queued. PostgreSQL skips rows another worker holds (``FOR UPDATE SKIP LOCKED``).
    ``attention`` (the marketing cap and priorities) may defer or skip eligible rows, or
    leave a subscriber's rows queued while another claim holds that subscriber; each
    further round reads past every row an earlier round saw.
    """
    # Reads below go through the connection (plain rows, no ORM loading), which does not
    # flush: anything the caller added to the session is written first.
    session.flush()
    seen: set[int] = set()
    for _ in range(ATTENTION_ROUNDS if attention is not None else 1):
        found, keep = _claim_once(
            session,
            worker=worker,
            limit=limit,
            now=now,
            lease=lease,
            kinds=kinds,
            attention=attention,
            seen=seen,
        )
        if keep or not found:
            return keep
    return []


def _claim_once(
    session: Session,
    *,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    kinds: Sequence[DeliveryKind] | None,
    attention: Attention | None,
    seen: set[int],
) -> tuple[int, list[Claimed]]:
    """One round; adds the ids it read to ``seen`` (and skips those already there)."""
    table = Delivery.__table__
    assert isinstance(table, Table)
    due = (
        # Eligibility (subscriber, campaign, enrollment) read with the row, as a last column.
        select(*(table.c[name] for name in _CLAIMED), _eligible_marketing().label("eligible"))
        .where(Delivery.status == DeliveryStatus.QUEUED.value, Delivery.due_at <= now)
        .where(
            # Spelled with OR: a bare NOT EXISTS becomes an anti join that PostgreSQL runs
            # over every queued row and then sorts them all (seconds per claim with a big
            # queue); as a per-row filter the walk of ix_deliveries_queued_due stops at
            # ``limit`` rows (drip and confirmation rows have no campaign at all).
            or_(
                Delivery.campaign_id.is_(None),
                ~exists().where(
                    Campaign.id == Delivery.campaign_id,
                    Campaign.state.in_([CampaignState.PAUSED.value, CampaignState.STALE.value]),
                ),
            )
        )
        .order_by(Delivery.due_at, Delivery.id)
        .limit(limit)
    )
    if kinds is not None:
        due = due.where(Delivery.kind.in_([k.value for k in kinds]))
    if seen:
        due = due.where(not_in_list(session, Delivery.id, seen))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=table)
    rows: list[Claimed] = []
    eligible: set[int] = set()
    # Plain tuples, built positionally: a mapping and a dict per row cost more than the
    # columns are worth (the select above lists them in ``Claimed``'s field order).
    for *values, ok in session.connection().execute(due).all():
        row = Claimed(*values)
        if ok:
            eligible.add(row.id)
        rows.append(row)
    if not rows:
        return 0, []
    seen.update(r.id for r in rows)
    suppressed = _suppressed_ids(session, rows)
    keep = [r for r in rows if r.id in eligible and r.id not in suppressed]
    drop = [r.id for r in rows if r.id not in eligible or r.id in suppressed]
    if drop:
        session.connection().execute(
            update(Delivery)
            .where(in_list(session, Delivery.id, drop))
            .values(
                status=DeliveryStatus.SKIPPED.value,
                error=SKIPPED_AT_CLAIM,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    if keep and attention is not None:
        keep = attention(session, keep, now)
    if keep:
        session.connection().execute(
            update(Delivery)
            .where(in_list(session, Delivery.id, [r.id for r in keep]))
            .values(
                status=DeliveryStatus.LEASED.value,
                leased_by=worker,
                lease_expires_at=now + lease,
                attempts=Delivery.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        # The kept rows get the values just written (what re-reading them would give: the
        # rows are ours in this transaction, locked on PostgreSQL, and SQLite has one
        # writer).
        expires = (now + lease).astimezone(UTC)
        stamp = now.astimezone(UTC)
        leased = DeliveryStatus.LEASED.value
        for row in keep:
            row.status = leased
            row.leased_by = worker
            row.lease_expires_at = expires
            row.attempts += 1
            row.updated_at = stamp
        keep.sort(key=lambda row: (row.due_at, row.id))  # oldest due first, as claimed
    return len(rows), keep


class _Addressed(Protocol):
    """What ``_suppressed_ids`` reads of a row (a ``Delivery`` or a row of its columns)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def subscriber_id(self) -> int | None: ...
    @property
    def to_email(self) -> str | None: ...


def _suppressed_ids(session: Session, rows: Iterable[_Addressed]) -> set[int]:
    """Ids of marketing rows whose address hash is on the suppression list."""
    confirmation = DeliveryKind.CONFIRMATION.value  # read once: an enum's .value is a lookup
    marketing = [r for r in rows if r.kind != confirmation]
    if not marketing:
        return set()
    emails: dict[int, str] = {}
    sub_ids = {r.subscriber_id for r in marketing if r.subscriber_id is not None}
    if sub_ids:
        found = (
            session.connection()
            .execute(
                select(Subscriber.id, Subscriber.email).where(
                    in_list(session, Subscriber.id, sub_ids)
                )
            )
            .all()
        )
        by_sub = {row[0]: row[1] for row in found}
        for r in marketing:
            if r.subscriber_id in by_sub:
                emails[r.id] = by_sub[r.subscriber_id]
    for r in marketing:
        if r.to_email:
            emails[r.id] = r.to_email
    # One SHA-256 per distinct address (not two per row).
    hashes = {e: email_hash(e) for e in set(emails.values())}
    if not hashes:
        return set()
    blocked = set(
        session.connection().scalars(
            select(Suppression.email_hash).where(
                in_list(session, Suppression.email_hash, set(hashes.values()), "text")
            )
        )
    )
    if not blocked:
        return set()
    return {rid for rid, e in emails.items() if hashes[e] in blocked}


SKIPPED_AT_CLAIM = "skipped at claim: unsubscribed, suppressed, exited or campaign cancelled"
SKIPPED_BEFORE_SENDING = (
    "skipped before sending: unsubscribed, suppressed or campaign cancelled after the claim"
)


def skip_withdrawn(session: Session, ids: Sequence[int], *, now: datetime) -> list[int]:
    """Mark ``skipped`` the rows among ``ids`` that may no longer go out (their subscriber
    unsubscribed or was suppressed, their campaign was cancelled, since the claim);
    return their ids. Run just before ``mark_sending``, in the same transaction, so only
    a chunk already in the provider's hands can still reach someone who left. Caller
    commits.
    """
    if not ids:
        return []
    session.flush()  # the reads below do not flush (see ``claim_batch``)
    # Columns, not ORM objects: what ``_suppressed_ids`` reads, for a whole chunk, with
    # eligibility read with each row as a column (one statement, not two).
    rows = (
        session.connection()
        .execute(
            select(
                Delivery.id,
                Delivery.kind,
                Delivery.subscriber_id,
                Delivery.to_email,
                _eligible_marketing().label("eligible"),
            ).where(
                in_list(session, Delivery.id, ids),
                _status(session) == DeliveryStatus.LEASED.value,
            )
        )
        .all()
    )
    if not rows:
        return []
    suppressed = _suppressed_ids(session, rows)
    drop = sorted(r.id for r in rows if not r.eligible or r.id in suppressed)
    if drop:
        session.connection().execute(
            update(Delivery)
            .where(
                in_list(session, Delivery.id, drop),
                _status(session) == DeliveryStatus.LEASED.value,
            )
            .values(
                status=DeliveryStatus.SKIPPED.value,
                error=SKIPPED_BEFORE_SENDING,
                lease_expires_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return drop


def mark_sending(
    session: Session,
    ids: Sequence[int],
    *,
    now: datetime,
    worker: str | None = None,
    lease: timedelta | None = None,
    nonces: Mapping[int, str] | None = None,
) -> list[int]:
    """Record that these rows are about to be handed to the provider; return their ids.

    With ``worker``, only rows still ``leased`` by that worker are marked: a row whose
    lease expired and went back to the queue (maybe claimed by another worker) is left
    alone and must not be sent by this one. ``lease`` renews the lease from ``now``.
    ``nonces`` (the random part of the Message-ID of rows that had none) are written to
    the rows marked, never to others: on PostgreSQL by the same statement (a second
    ``UPDATE`` would write every email's row a second time, indexes and all). Caller
    commits.
    """
    if not ids:
        return []
    expires = None if lease is None else now + lease
    nonces = {i: nonces[i] for i in ids if i in nonces} if nonces else {}
    if nonces and worker is not None and session.get_bind().dialect.name == "postgresql":
        return _mark_with_nonces(session, ids, nonces, now=now, worker=worker, expires=expires)
    statement = (
        update(Delivery)
        .where(in_list(session, Delivery.id, ids))
        .execution_options(synchronize_session=False)
    )
    values: dict[str, object] = {"status": DeliveryStatus.SENDING.value, "updated_at": now}
    if expires is not None:
        values["lease_expires_at"] = expires
    if worker is None:
        session.connection().execute(statement.values(**values))
        marked = list(ids)
    else:
        owned = statement.where(
            _status(session) == DeliveryStatus.LEASED.value, Delivery.leased_by == worker
        )
        result = session.connection().execute(owned.values(**values).returning(Delivery.id))
        marked = sorted(result.scalars())
    if nonces:
        _store_nonces(session, {i: nonces[i] for i in marked if i in nonces})
    return marked


def _mark_with_nonces(
    session: Session,
    ids: Sequence[int],
    nonces: Mapping[int, str],
    *,
    now: datetime,
    worker: str,
    expires: datetime | None,
) -> list[int]:
    """``mark_sending`` on PostgreSQL with nonces: one ``UPDATE ... FROM unnest``."""
    statement = text(
        "UPDATE deliveries AS d SET status = :sending, updated_at = :now, "
        "lease_expires_at = COALESCE(:expires, d.lease_expires_at), "
        "message_nonce = COALESCE(v.nonce, d.message_nonce) "
        "FROM unnest(CAST(:ids AS bigint[]), CAST(:nonces AS text[])) AS v(id, nonce) "
        "WHERE d.id = v.id AND d.status = :leased AND d.leased_by = :worker RETURNING d.id"
    ).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("expires", type_=UTCDateTime()))
    result = session.connection().execute(
        statement,
        {
            "sending": DeliveryStatus.SENDING.value,
            "leased": DeliveryStatus.LEASED.value,
            "now": now,
            "expires": expires,
            "ids": list(ids),
            "nonces": [nonces.get(i) for i in ids],
            "worker": worker,
        },
    )
    return sorted(result.scalars())


def _store_nonces(session: Session, nonces: Mapping[int, str]) -> None:
    """``deliveries.message_nonce`` of these rows: one ``UPDATE ... FROM unnest`` on
    PostgreSQL (an executemany there is a round of statements per row), one executemany
    on SQLite (in-process, cheap; only the indexes of changed columns are written)."""
    if not nonces:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(
            text(
                "UPDATE deliveries SET message_nonce = v.nonce FROM unnest("
                "CAST(:ids AS bigint[]), CAST(:nonces AS text[])) AS v(id, nonce) "
                "WHERE deliveries.id = v.id"
            ),
            {"ids": list(nonces), "nonces": list(nonces.values())},
        )
        return
    table = Delivery.__table__
    assert isinstance(table, Table)
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(message_nonce=bindparam("b_nonce")),
        [{"b_id": i, "b_nonce": n} for i, n in nonces.items()],
    )


def record_results(
    session: Session, results: Sequence[SendResult], *, now: datetime, max_attempts: int
) -> None:
    """Write provider outcomes: few statements per batch, the caller commits once.

    Only rows still ``leased`` or ``sending`` are touched: a row that a provider event has
    meanwhile settled (``sent``) keeps that state, so a late RETRY can never resend it.
    NOT_ATTEMPTED rows (never shown to the provider) go back to ``queued`` after
    ``retry_after`` (or ``NOT_ATTEMPTED_DELAY``) and the attempt does not count.
    """
    session.flush()  # the reads below do not flush (see ``claim_batch``)
    table = Delivery.__table__
    assert isinstance(table, Table)
    # Spelled with OR, not IN: an expanding IN cannot be used in an executemany.
    status = _status(session)
    in_flight = or_(
        status == DeliveryStatus.LEASED.value,
        status == DeliveryStatus.SENDING.value,
    )
    # Outgoing webhooks (email.sent / email.failed) for the rows this call settles.
    held = _held(session, results) if listened(session, "email.sent", "email.failed") else set()
    settled: dict[int, tuple[str, str | None, str | None]] = {
        r.delivery_id: (r.status.value, r.provider_message_id, r.error)
        for r in results
        if r.delivery_id in held and r.status in (SendStatus.SENT, SendStatus.FAILED)
    }
    # Outcomes shared by many rows (a SendGrid request gives its X-Message-Id to every
    # email in it) are written by one UPDATE each; the others by one executemany.
    shared: dict[tuple[SendStatus, str | None, str | None], list[int]] = {}
    for r in results:
        if r.status in (SendStatus.SENT, SendStatus.FAILED, SendStatus.UNKNOWN):
            shared.setdefault((r.status, r.provider_message_id, r.error), []).append(r.delivery_id)
    final: list[dict[str, object]] = []
    for (status, message_id, error), ids in shared.items():
        sent_at = now if status is SendStatus.SENT else None
        if len(ids) == 1:
            final.append(
                {
                    "b_id": ids[0],
                    "b_status": status.value,
                    "b_provider_message_id": message_id,
                    "b_sent_at": sent_at,
                    "b_error": error,
                }
            )
            continue
        session.connection().execute(
            update(table)
            .where(in_list(session, table.c.id, ids), in_flight)
            .values(
                status=status.value,
                provider_message_id=message_id,
                sent_at=sent_at,
                error=error,
                lease_expires_at=None,
                updated_at=now,
            )
        )
    if final:  # one executemany
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), in_flight)
            .values(
                status=bindparam("b_status"),
                provider_message_id=bindparam("b_provider_message_id"),
                sent_at=bindparam("b_sent_at"),
                error=bindparam("b_error"),
                lease_expires_at=None,
                updated_at=now,
            ),
            final,
        )
    _requeue_not_attempted(session, results, now=now, in_flight=in_flight)
    retry = [r for r in results if r.status is SendStatus.RETRY]
    if retry:
        attempts = dict(
            session.connection()
            .execute(
                select(Delivery.id, Delivery.attempts).where(
                    Delivery.id.in_([r.delivery_id for r in retry])
                )
            )
            .all()
        )
        for result in retry:
            tries = attempts.get(result.delivery_id, max_attempts)
            if tries >= max_attempts:
                values: dict[str, object] = {
                    "status": DeliveryStatus.FAILED.value,
                    "error": f"gave up after {tries} attempts: {result.error}",
                }
                if result.delivery_id in held:
                    settled[result.delivery_id] = ("failed", None, str(values["error"]))
            else:
                delay = retry_delay(tries, retry_after=result.retry_after)
                values = {
                    "status": DeliveryStatus.QUEUED.value,
                    "error": result.error,
                    "due_at": now + timedelta(seconds=delay),
                }
            session.execute(
                update(Delivery)
                .where(Delivery.id == result.delivery_id, in_flight)
                .values(lease_expires_at=None, leased_by=None, updated_at=now, **values)
            )
    emails_settled(session, settled, now=now)


def _held(session: Session, results: Sequence[SendResult]) -> set[int]:
    """Ids among ``results`` still ``leased`` or ``sending``: the ones an outcome settles."""
    ids = sorted({r.delivery_id for r in results})
    if not ids:
        return set()
    return set(
        session.connection().scalars(
            select(Delivery.id).where(
                in_list(session, Delivery.id, ids),
                _status(session).in_([DeliveryStatus.LEASED.value, DeliveryStatus.SENDING.value]),
            )
        )
    )


def _requeue_not_attempted(
    session: Session,
    results: Sequence[SendResult],
    *,
    now: datetime,
    in_flight: ColumnElement[bool],
) -> None:
    table = Delivery.__table__
    assert isinstance(table, Table)
    params = [
        {
            "b_id": r.delivery_id,
            "b_error": r.error,
            "b_due_at": now + timedelta(seconds=bounded_wait(r.retry_after or NOT_ATTEMPTED_DELAY)),
        }
        for r in results
        if r.status is SendStatus.NOT_ATTEMPTED
    ]
    if params:  # one executemany
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), in_flight)
            .values(
                status=DeliveryStatus.QUEUED.value,
                attempts=table.c.attempts - 1,
                error=bindparam("b_error"),
                due_at=bindparam("b_due_at"),
                lease_expires_at=None,
                leased_by=None,
                updated_at=now,
            ),
            params,
        )


def release(session: Session, ids: Sequence[int], *, now: datetime, worker: str) -> None:
    """Give rows back untouched (never handed over): the attempt does not count.

    Only rows ``worker`` still holds (``leased`` or ``sending``) are touched: an outcome
    already recorded, or a row another worker took over, is left alone. Caller commits.
    """
    if ids:
        session.execute(
            update(Delivery)
            .where(
                in_list(session, Delivery.id, ids),
                _status(session).in_([DeliveryStatus.LEASED.value, DeliveryStatus.SENDING.value]),
                Delivery.leased_by == worker,
            )
            .values(
                status=DeliveryStatus.QUEUED.value,
                attempts=Delivery.attempts - 1,
                lease_expires_at=None,
                leased_by=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )


def still_leased(session: Session, ids: Sequence[int], worker: str) -> list[int]:
    """The rows among ``ids`` that ``worker`` still holds ``leased`` (not handed over,
    lease not taken over), in id order."""
    if not ids:
        return []
    statement = select(Delivery.id).where(
        in_list(session, Delivery.id, ids),
        _status(session) == DeliveryStatus.LEASED.value,
        Delivery.leased_by == worker,
    )
    return sorted(session.scalars(statement))


def recover_expired_leases(session: Session, *, now: datetime) -> tuple[int, int]:
    """Expired ``leased`` rows go back to ``queued``; expired ``sending`` become ``unknown``.

    Returns (requeued, unknown). The caller commits.
    """
    expired = Delivery.lease_expires_at < now
    requeued = _rowcount(
        session,
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.LEASED.value, expired)
        .values(
            status=DeliveryStatus.QUEUED.value,
            attempts=Delivery.attempts - 1,
            lease_expires_at=None,
            leased_by=None,
            updated_at=now,
        ),
    )
    unknown = _rowcount(
        session,
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.SENDING.value, expired)
        .values(
            status=DeliveryStatus.UNKNOWN.value,
            error="lease expired while the message was being handed to the provider",
            lease_expires_at=None,
            updated_at=now,
        ),
    )
    return requeued, unknown


def requeue_unknown(session: Session, *, now: datetime, before: datetime | None = None) -> int:
    """Operator's choice: send ``unknown`` rows again (last touched before ``before``).

    The only way an ``unknown`` row is ever resent: the operator accepts that a recipient
    may get the email twice. Suppressions and unsubscribes are re-checked at claim time.
    Returns how many rows were requeued. The caller commits.
    """
    statement = update(Delivery).where(Delivery.status == DeliveryStatus.UNKNOWN.value)
    if before is not None:
        statement = statement.where(Delivery.updated_at < before)
    return _rowcount(
        session,
        statement.values(
            status=DeliveryStatus.QUEUED.value,
            due_at=now,
            lease_expires_at=None,
            leased_by=None,
            error="requeued by the operator after an unknown outcome",
            updated_at=now,
        ),
    )


def _status(session: Session) -> Any:
    """``deliveries.status`` for a filter next to ``id IN (a list)``: SQLite would
    otherwise walk every row of that status by ``ix_deliveries_claim`` instead of looking
    up the listed ids (``bound_lists.unindexed``)."""
    return unindexed(session, Delivery.status)


def _rowcount(session: Session, statement: Any) -> int:
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)


def count_by_status(session: Session, **filters: object) -> dict[str, int]:
    statement = select(Delivery.status, func.count()).group_by(Delivery.status)
    for name, value in filters.items():
        statement = statement.where(getattr(Delivery, name) == value)
    return {status: int(n) for status, n in session.execute(statement).all()}
