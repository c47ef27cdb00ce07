"""A campaign's audience in SQL: the segment condition, counting, and freezing it into the
``deliveries`` ledger in set-based batches.

Tag matching uses each dialect's JSON functions rather than ``LIKE`` on the JSON text, so a
tag matches only a whole list element and no quoting or escaping (``"``, ``%``, ``_``,
non-ASCII) can make it match something else:

- SQLite: ``EXISTS (SELECT 1 FROM json_each(subscribers.tags) WHERE value IN (...))``
- PostgreSQL: ``COALESCE(subscribers.tags::jsonb, '[]') ?| ARRAY[...]``

Freezing never loads subscribers into Python: each batch is one ``INSERT ... SELECT`` over a
keyset range of subscriber ids (``id > audience_cursor``), so memory stays flat whatever the
list size. The ledger key ``campaign:<campaign id>:<subscriber id>`` makes a batch safe to
repeat after a crash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.campaigns.schedule import Segment
from newsletter.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    UTCDateTime,
)


def _has_any(dialect: str, tags: tuple[str, ...]) -> ColumnElement[bool]:
    if dialect == "postgresql":
        as_jsonb = func.coalesce(cast(Subscriber.tags, JSONB), cast(literal("[]"), JSONB))
        return as_jsonb.op("?|", return_type=Boolean)(cast(list(tags), ARRAY(String)))
    each = func.json_each(Subscriber.tags).table_valued("value").alias("tag")
    return exists(select(1).select_from(each).where(column("value").in_(list(tags))))


def has_any_tag(dialect: str, tags: tuple[str, ...]) -> ColumnElement[bool]:
    """SQL: the subscriber has at least one of ``tags`` (a whole list element)."""
    return _has_any(dialect, tags)


def attribute_equals(dialect: str, name: str, value: str) -> ColumnElement[bool]:
    """SQL: custom field ``name`` reads ``value`` as text (``--where NAME=VALUE``).

    Strings compare as they are, numbers in their JSON form, booleans as true / false, on
    both dialects; a subscriber without the field never matches.
    """
    if dialect == "postgresql":
        field = cast(Subscriber.attributes, JSONB).op("->>", return_type=String)(literal(name))
        return field == value
    path = literal('$."' + name + '"')
    kind = func.json_type(Subscriber.attributes, path)
    text = case(
        (kind == "true", literal("true")),
        (kind == "false", literal("false")),
        else_=cast(func.json_extract(Subscriber.attributes, path), String),
    )
    return text == value


def audience_condition(dialect: str, segment: Segment) -> ColumnElement[bool]:
    """Active subscribers in the segment (suppressions are re-checked at claim time)."""
    conditions: list[ColumnElement[bool]] = [Subscriber.status == SubscriberStatus.ACTIVE.value]
    if segment.include:
        conditions.append(_has_any(dialect, segment.include))
    if segment.exclude:
        conditions.append(~_has_any(dialect, segment.exclude))
    for name, value in segment.where:
        conditions.append(attribute_equals(dialect, name, value))
    return and_(true(), *conditions)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def count_audience(session: Session, segment: Segment) -> int:
    condition = audience_condition(_dialect(session), segment)
    return int(session.scalar(select(func.count()).select_from(Subscriber).where(condition)) or 0)


def audience_zones(session: Session, segment: Segment) -> list[str]:
    """The distinct time zones of the audience as it stands (a few hundred at most)."""
    condition = audience_condition(_dialect(session), segment)
    return sorted(session.scalars(select(Subscriber.timezone).where(condition).distinct()))


def batch_upper_bound(session: Session, segment: Segment, *, after: int, size: int) -> int | None:
    """The id of the ``size``-th audience member after ``after``; None if fewer are left."""
    condition = audience_condition(_dialect(session), segment)
    return session.scalar(
        select(Subscriber.id)
        .where(Subscriber.id > after, condition)
        .order_by(Subscriber.id)
        .offset(size - 1)
        .limit(1)
    )


def freeze_range(
    session: Session,
    *,
    campaign_id: int,
    item_id: str,
    segment: Segment,
    after: int,
    upto: int | None,
    due_at: datetime | dict[str, datetime],
    now: datetime,
) -> int:
    """Insert one ledger row per audience member with ``after < id <= upto``; return how many
    were new. ``due_at`` is one instant, or one per time zone (``--local-time``; a zone not in
    the mapping gets the earliest instant). Does not commit."""
    dialect = _dialect(session)
    condition = audience_condition(dialect, segment)
    ids = Subscriber.id > after
    if upto is not None:
        ids = and_(ids, Subscriber.id <= upto)
    due: ColumnElement[datetime]
    if isinstance(due_at, dict):
        earliest = min(due_at.values())
        due = case(
            {name: literal(at, UTCDateTime()) for name, at in due_at.items()},
            value=Subscriber.timezone,
            else_=literal(earliest, UTCDateTime()),
        )
    else:
        due = literal(due_at, UTCDateTime())
    rows = select(
        literal(f"campaign:{campaign_id}:") + cast(Subscriber.id, String),
        literal(DeliveryKind.CAMPAIGN.value),
        Subscriber.id,
        literal(item_id),
        literal(campaign_id),
        literal(DeliveryStatus.QUEUED.value),
        literal(0),
        due,
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
    ).where(ids, condition)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Delivery).from_select(
        [
            "key",
            "kind",
            "subscriber_id",
            "item_id",
            "campaign_id",
            "status",
            "attempts",
            "due_at",
            "created_at",
            "updated_at",
        ],
        rows,
    )
    # ``preserve_rowcount``: SQLAlchemy only keeps the rowcount of UPDATE/DELETE otherwise.
    statement = statement.on_conflict_do_nothing(index_elements=["key"])
    result = session.connection().execute(statement.execution_options(preserve_rowcount=True))
    return max(0, result.rowcount)


def range_zones(session: Session, segment: Segment, *, after: int, upto: int | None) -> list[str]:
    """Distinct zones of the audience members in one keyset range."""
    condition = audience_condition(_dialect(session), segment)
    ids = Subscriber.id > after
    if upto is not None:
        ids = and_(ids, Subscriber.id <= upto)
    return list(session.scalars(select(Subscriber.timezone).where(ids, condition).distinct()))
