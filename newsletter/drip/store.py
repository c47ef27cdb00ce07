"""The drip planner's set-based writes: a batch's ledger rows and enrollment moves.

Each function writes a whole batch with one statement per kind of write: on PostgreSQL an
``INSERT ... SELECT`` / ``UPDATE ... FROM`` over ``unnest`` of bound arrays (no statement
with thousands of placeholders to parse per batch), on SQLite one ``executemany`` through
the driver (a C loop over prepared rows). Nothing here commits or decides: the planner
decides (``planning``, ``timing``) and owns the transaction.

A ledger row's key is ``drip_key`` spelled in SQL: ``'drip:' || enrollment id || ':' ||
item id``; a second insert of the same step is a no-op (``ON CONFLICT (key) DO NOTHING`` on
SQLite; on PostgreSQL a plain insert in a savepoint, run again with a ``NOT EXISTS`` probe
of the key's unique index only if a key was already there: see ``_new_keys``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, INTEGER, TEXT
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TextualSelect

from newsletter.models import DeliveryKind, DeliveryStatus, UTCDateTime


@dataclass(frozen=True)
class PlannedRow:
    """One drip ledger row to write (``queued``, or ``skipped`` with a reason)."""

    enrollment_id: int
    subscriber_id: int
    item_id: str
    step: int
    skipped_reason: str | None = None


@dataclass(frozen=True)
class EnrollmentMove:
    """An enrollment's state after planning (every column written, changed or not)."""

    id: int
    status: str
    position: int
    last_item_id: str | None
    next_due_at: datetime | None


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_planned(session: Session, rows: Sequence[PlannedRow], *, now: datetime) -> int:
    """Insert the rows whose key is new (all with the same reason, or none); return how
    many were inserted. ``due_at``, ``created_at`` and ``updated_at`` are ``now``."""
    if not rows:
        return 0
    reasons = {r.skipped_reason for r in rows}
    if len(reasons) != 1:
        raise ValueError(f"insert_planned writes one status per call, got reasons {reasons}")
    reason = reasons.pop()
    status = DeliveryStatus.SKIPPED.value if reason else DeliveryStatus.QUEUED.value
    if _postgres(session):
        return _insert_postgres(session, rows, now=now, status=status, reason=reason)
    return _insert_sqlite(session, rows, now=now, status=status, reason=reason)


_COLUMNS = (
    "key, kind, item_id, due_at, subscriber_id, enrollment_id, step, status, error, "
    "attempts, created_at, updated_at"
)

# PostgreSQL: a key already in the ledger is left out without ``ON CONFLICT (key) DO
# NOTHING``, whose speculative insertion costs every row an extra WAL record and index
# check (~11% more WAL and 10-25% more time for the same rows, measured with EXPLAIN
# (ANALYZE, WAL)). A batch's rows are inserted plainly inside a savepoint (``_new_keys``):
# the unique index on ``key`` refuses any key already there, and only then is the
# statement run again with a ``NOT EXISTS`` probe of that index per row (``_NEW_KEY``).
# A key already present is rare: the batch read already leaves out the items a subscriber
# had, so it takes a drip row that lookup does not find (one whose subscriber id was
# erased, say). The probe sees every committed row, and the only writer of drip keys is
# the planner, one at a time (its advisory lock), so none is added between the probe and
# the insert; if one ever were, the unique index refuses it and the whole batch rolls
# back (nothing half-written) to be planned again.
_NEW_KEY = (
    "NOT EXISTS (SELECT 1 FROM deliveries AS k WHERE k.key = 'drip:' || {eid} || ':' || {item})"
)
_KEY_CONSTRAINT = "uq_deliveries_key"


def _new_keys(
    session: Session, plain: str, checked: str, params: dict[str, Any], *binds: Any
) -> int:
    """Run the ``INSERT`` *plain* in a savepoint; if the ledger already holds one of its
    keys, run *checked* (the same with ``_NEW_KEY``) instead. Return the rows inserted."""
    try:
        with session.begin_nested():
            result = session.execute(text(plain).bindparams(*binds), params)
    except IntegrityError as exc:
        diag = getattr(exc.orig, "diag", None)
        if getattr(diag, "constraint_name", None) != _KEY_CONSTRAINT:
            raise
        result = session.execute(text(checked).bindparams(*binds), params)
    return int(getattr(result, "rowcount", 0) or 0)


def _insert_postgres(
    session: Session,
    rows: Sequence[PlannedRow],
    *,
    now: datetime,
    status: str,
    reason: str | None,
) -> int:
    arrays, params = _unnest(eids="bigint", sids="bigint", items="text", steps="integer")
    insert = (
        f"INSERT INTO deliveries ({_COLUMNS}) "  # noqa: S608 - constant SQL
        "SELECT 'drip:' || u.eid || ':' || u.item, :kind, u.item, :now, u.sid, u.eid, u.step, "
        f":status, :error, 0, :now, :now FROM {arrays} WITH ORDINALITY AS u(eid, sid, item, "
        "step, n) WHERE {where} ORDER BY u.n"
    )
    return _new_keys(
        session,
        insert.format(where="true"),
        insert.format(where=_NEW_KEY.format(eid="u.eid", item="u.item")),
        {
            "eids": [r.enrollment_id for r in rows],
            "sids": [r.subscriber_id for r in rows],
            "items": [r.item_id for r in rows],
            "steps": [r.step for r in rows],
            "now": now,
            "kind": DeliveryKind.DRIP.value,
            "status": status,
            "error": reason,
        },
        *params,
        bindparam("now", type_=UTCDateTime()),
    )


def _insert_sqlite(
    session: Session,
    rows: Sequence[PlannedRow],
    *,
    now: datetime,
    status: str,
    reason: str | None,
) -> int:
    stamp = _sqlite_datetime(session, now)
    kind = DeliveryKind.DRIP.value
    connection = session.connection()
    before = _changes(connection)
    connection.exec_driver_sql(
        f"INSERT INTO deliveries ({_COLUMNS}) "  # noqa: S608 - constant SQL
        "VALUES ('drip:' || ? || ':' || ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) "
        "ON CONFLICT (key) DO NOTHING",
        [
            (
                r.enrollment_id,
                r.item_id,
                kind,
                r.item_id,
                stamp,
                r.subscriber_id,
                r.enrollment_id,
                r.step,
                status,
                reason,
                stamp,
                stamp,
            )
            for r in rows
        ],
    )
    return _changes(connection) - before


def _changes(connection: Any) -> int:
    """SQLite's running count of rows changed on this connection (an ignored conflict
    does not count, unlike the driver's executemany ``rowcount``)."""
    return int(connection.exec_driver_sql("SELECT total_changes()").scalar_one())


def move_enrollments(session: Session, moves: Sequence[EnrollmentMove]) -> None:
    """Write each enrollment's status, position, last item and next due time."""
    if not moves:
        return
    if _postgres(session):
        arrays, params = _unnest(
            ids="bigint", statuses="text", positions="integer", items="text", dues="timestamptz"
        )
        statement = text(
            "UPDATE enrollments AS e SET status = u.status, position = u.position, "  # noqa: S608 - constant SQL
            f"last_item_id = u.item, next_due_at = u.due FROM {arrays} "
            "AS u(id, status, position, item, due) WHERE e.id = u.id"
        ).bindparams(*params)
        session.execute(
            statement,
            {
                "ids": [m.id for m in moves],
                "statuses": [m.status for m in moves],
                "positions": [m.position for m in moves],
                "items": [m.last_item_id for m in moves],
                "dues": [m.next_due_at for m in moves],
            },
        )
        return
    stamp = _stamper(session)
    session.connection().exec_driver_sql(
        "UPDATE enrollments SET status = ?, position = ?, last_item_id = ?, next_due_at = ? "
        "WHERE id = ?",
        [(m.status, m.position, m.last_item_id, stamp(m.next_due_at), m.id) for m in moves],
    )


_ARRAYS: dict[str, Any] = {
    "bigint": BIGINT,
    "integer": INTEGER,
    "text": TEXT,
    "timestamptz": UTCDateTime(),
}


def _unnest(**columns: str) -> tuple[str, list[Any]]:
    """``unnest(CAST(:a AS t[]), ...)`` over one bound array per column (PostgreSQL), and
    the bind parameters typing them; ``columns`` maps each name to its SQL element type."""
    casts = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
    params = [bindparam(name, type_=ARRAY(_ARRAYS[kind])) for name, kind in columns.items()]
    return f"unnest({casts})", params


def _stamper(session: Session) -> Any:
    """The SQLite driver value of an aware datetime, exactly as ``UTCDateTime`` binds it
    through SQLAlchemy (the dialect's text form, so comparisons in SQL stay right)."""
    dialect = session.get_bind().dialect
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    return processor


def _sqlite_datetime(session: Session, value: datetime) -> Any:
    return _stamper(session)(value)


def id_in(
    session: Session, column: ColumnElement[Any] | InstrumentedAttribute[Any], ids: Sequence[int]
) -> Any:
    """``column IN ids`` as one bound value: ``= ANY(array)`` on PostgreSQL, a
    ``json_each`` sub-select on SQLite (never one placeholder per id)."""
    if _postgres(session):
        return column == any_(bindparam("ids_any", list(ids), type_=ARRAY(BIGINT)))
    values: TextualSelect = (
        text("SELECT value FROM json_each(:ids_json)")
        .bindparams(ids_json=json.dumps(list(ids)))
        .columns(value=Integer)
    )
    return column.in_(values)


# ---- one statement per group of enrollments that share a decision --------------------


@dataclass(frozen=True)
class IdList:
    """Enrollment ids as the database returned them, comma-separated (``group_concat`` /
    ``string_agg``): handed back to SQL as one bound value, never parsed row by row."""

    csv: str

    @classmethod
    def of(cls, ids: Sequence[int]) -> IdList:
        return cls(",".join(str(int(i)) for i in ids))

    def __add__(self, other: IdList) -> IdList:
        return IdList(f"{self.csv},{other.csv}" if self.csv and other.csv else self.csv + other.csv)

    def ints(self) -> list[int]:
        return [int(i) for i in self.csv.split(",")] if self.csv else []


def _ids(session: Session, column: str, ids: IdList) -> tuple[str, str]:
    """SQL for ``column IN ids`` with one bound text value, and that value."""
    if _postgres(session):
        return f"{column} = ANY(CAST(string_to_array(:ids, ',') AS bigint[]))", ids.csv
    return f"{column} IN (SELECT value FROM json_each(:ids))", f"[{ids.csv}]"  # noqa: S608 - column is a constant


def insert_for_enrollments(
    session: Session,
    ids: IdList,
    *,
    item_id: str,
    step: int,
    skipped_reason: str | None,
    now: datetime,
) -> int:
    """One ledger row of ``item_id`` for each enrollment in ``ids`` whose key is new, in
    one ``INSERT ... SELECT`` from ``enrollments``; return how many were inserted."""
    if not ids.csv:
        return 0
    where, value = _ids(session, "e.id", ids)
    status = DeliveryStatus.SKIPPED.value if skipped_reason else DeliveryStatus.QUEUED.value
    insert = (
        f"INSERT INTO deliveries ({_COLUMNS}) "  # noqa: S608 - constant SQL
        "SELECT 'drip:' || e.id || ':' || :item, :kind, :item, :now, e.subscriber_id, e.id, "
        f":step, :status, :error, 0, :now, :now FROM enrollments AS e WHERE {where}"
    )
    now_type = bindparam("now", type_=UTCDateTime())
    params = {
        "ids": value,
        "item": item_id,
        "kind": DeliveryKind.DRIP.value,
        "now": now,
        "step": step,
        "status": status,
        "error": skipped_reason,
    }
    if _postgres(session):
        checked = f" AND {_NEW_KEY.format(eid='e.id', item=':item')}"
        return _new_keys(
            session,
            insert + " ORDER BY e.id",
            insert + checked + " ORDER BY e.id",
            params,
            now_type,
        )
    statement = text(insert + " ORDER BY e.id ON CONFLICT (key) DO NOTHING").bindparams(now_type)
    connection = session.connection()
    before = _changes(connection)
    connection.execute(statement, params)
    return _changes(connection) - before


def move_group(
    session: Session,
    ids: IdList,
    *,
    status: str,
    next_due_at: datetime | None,
    position: int | None = None,
    last_item_id: str | None = None,
) -> None:
    """Give every enrollment in ``ids`` the same status and next due time (and, with
    ``position``, the same position and last item) in one ``UPDATE``."""
    if not ids.csv:
        return
    where, value = _ids(session, "id", ids)
    columns = "status = :status, next_due_at = :due"
    if position is not None:
        columns += ", position = :position, last_item_id = :last"
    statement = text(
        f"UPDATE enrollments SET {columns} WHERE {where}"  # noqa: S608 - constant SQL
    ).bindparams(bindparam("due", type_=UTCDateTime()))
    session.execute(
        statement,
        {
            "ids": value,
            "status": status,
            "due": next_due_at,
            "position": position,
            "last": last_item_id,
        },
    )
