"""``column IN (a list)`` with the list bound as ONE value, not one placeholder per item.

An expanding ``IN`` of a thousand ids is re-rendered by SQLAlchemy on every execution
(a thousand placeholder names, a thousand parameters to bind): on the delivery path that
cost more than the statements themselves. Here the list travels as one value:
``= ANY(CAST(:v AS bigint[]))`` on PostgreSQL, ``IN (SELECT value FROM json_each(:v))`` on
SQLite. The statement text is the same whatever the list's length, so it is compiled once
per process. An empty list matches nothing (``in_list``) or everything (``not_in_list``),
as an expanding ``IN`` does.

On PostgreSQL an id list is an array of the column's own type (``integer[]`` for an
``integer`` column): ``integer = ANY(bigint[])`` is a cross-type operator PostgreSQL cannot
hash, so a filter on it compares every row with every item of the list (a thousand ids
over twenty thousand rows: 90 ms where the hashed one takes 4 ms, issue 19).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Literal

from sqlalchemy import (
    BIGINT,
    INTEGER,
    TEXT,
    BigInteger,
    ColumnElement,
    Integer,
    Text,
    all_,
    any_,
    bindparam,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

Kind = Literal["bigint", "text"]


def in_list(
    session: Session, column: Any, values: Collection[int] | Collection[str], kind: Kind = "bigint"
) -> ColumnElement[bool]:
    """SQL for ``column IN values`` with ``values`` bound as one parameter."""
    if _postgres(session):
        return column == any_(_array(column, values, kind))  # type: ignore[no-any-return]
    return column.in_(_json_each(values, kind))  # type: ignore[no-any-return]


def not_in_list(
    session: Session, column: Any, values: Collection[int] | Collection[str], kind: Kind = "bigint"
) -> ColumnElement[bool]:
    """SQL for ``column NOT IN values`` with ``values`` bound as one parameter."""
    if _postgres(session):
        return column != all_(_array(column, values, kind))  # type: ignore[no-any-return]
    return column.not_in(_json_each(values, kind))  # type: ignore[no-any-return]


def unindexed(session: Session, column: Any) -> Any:
    """``column`` in a filter whose rows an ``in_list`` of ids must find, not an index on
    ``column``: SQLite's ``+column`` (a term the planner does not use an index for);
    unchanged on PostgreSQL, which chooses by its statistics.

    SQLite has no statistics here (nothing runs ``ANALYZE``) and prefers an index on an
    equality over ``IN (SELECT value FROM json_each(...))``: ``subscriber_id IN (the
    batch's) AND status = 'sent'`` then walks every sent row of the ledger, growing with
    its history (issue 19: 0.3 s per claim with a million sent rows)."""
    if _postgres(session):
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _array(column: Any, values: Collection[int] | Collection[str], kind: Kind) -> Any:
    return bindparam(None, list(values), type_=ARRAY(_element(column, kind)))


def _element(column: Any, kind: Kind) -> Any:
    """The array's element type: the column's own integer type, so the comparison has
    one type on both sides (hashable); ``bigint`` when the column's is not known."""
    if kind == "text":
        return TEXT()
    own = getattr(column, "type", None)
    if isinstance(own, Integer) and not isinstance(own, BigInteger):
        return INTEGER()
    return BIGINT()


def _json_each(values: Collection[int] | Collection[str], kind: Kind) -> Any:
    # Textual: cheaper to build than ``func.json_each(...).table_valued`` (this runs for
    # every list of every statement), and the same cache key whatever the list; a unique
    # parameter, so two lists can share a statement.
    listed = bindparam("json_list", _json_list(values, kind), type_=Text(), unique=True)
    return text("SELECT value FROM json_each(:json_list)").bindparams(listed).columns(value=Text())


def _json_list(values: Collection[int] | Collection[str], kind: Kind) -> str:
    """``values`` as a JSON array; ids (``int``s) without the encoder's overhead."""
    if kind == "bigint":
        return "[" + ",".join(map(str, map(int, values))) + "]"
    return json.dumps(list(values))
