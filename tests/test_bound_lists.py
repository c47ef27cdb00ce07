"""``column IN (a list)`` bound as one value (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection

from newsletter.app import App
from newsletter.bound_lists import in_list, not_in_list
from newsletter.db import make_engine, transaction
from newsletter.models import Delivery, Subscriber
from tests.factories import add_subscriber


@pytest.fixture
def people(app: App) -> list[tuple[int, str]]:
    with transaction(app.sessions) as session:
        added = [add_subscriber(session, f"p{n}@example.org") for n in range(5)]
        return [(s.id, s.email) for s in added]


@pytest.mark.parametrize(
    "pick", [[], [0], [1, 3], [0, 1, 2, 3, 4]], ids=["none", "one", "two", "all"]
)
def test_the_lists_match_what_an_expanding_in_matches(
    app: App, people: list[tuple[int, str]], pick: list[int]
) -> None:
    """Ids and text, IN and NOT IN, the empty list included (nothing / everything)."""
    ids = [people[i][0] for i in pick]
    emails = [people[i][1] for i in pick]
    every = {pid for pid, _ in people}
    with app.sessions() as session:
        for condition, expected in (
            (in_list(session, Subscriber.id, ids), set(ids)),
            (not_in_list(session, Subscriber.id, ids), every - set(ids)),
            (in_list(session, Subscriber.email, emails, "text"), set(ids)),
            (not_in_list(session, Subscriber.email, emails, "text"), every - set(ids)),
            (Subscriber.id.in_(ids), set(ids)),  # the expanding IN, for comparison
        ):
            assert set(session.scalars(select(Subscriber.id).where(condition))) == expected


def test_a_list_travels_as_one_parameter_and_one_statement_text(app: App) -> None:
    """The statement text does not grow with the list (no placeholder per item), so it is
    compiled once and the driver binds one value."""
    seen: list[tuple[str, object]] = []

    def record(
        _conn: Connection, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        seen.append((statement, parameters))

    engine = app.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        with app.sessions() as session:
            for size in (3, 1000):
                ids = list(range(1, size + 1))
                session.scalars(select(Subscriber.id).where(in_list(session, Subscriber.id, ids)))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    (small, small_params), (large, large_params) = seen[-2:]
    assert small == large
    for params in (small_params, large_params):
        values = list(params.values()) if isinstance(params, dict) else list(params)  # type: ignore[call-overload]
        assert len(values) == 1


def test_an_id_list_has_its_columns_own_type(app: App) -> None:
    """On PostgreSQL an ``integer`` column is compared with an ``integer[]`` (one type:
    the comparison can be hashed), a ``bigint`` one with a ``bigint[]``; the same rows
    either way."""
    seen: list[str] = []

    def record(_conn: Connection, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    engine = app.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        with app.sessions() as session:
            session.scalars(select(Subscriber.id).where(in_list(session, Subscriber.id, [1])))
            session.scalars(select(Delivery.id).where(not_in_list(session, Delivery.id, [1])))
            session.scalars(
                select(Delivery.id).where(in_list(session, Delivery.subscriber_id, [1]))
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    if engine.dialect.name != "postgresql":
        return
    assert ["INTEGER[]" in seen[0], "BIGINT[]" in seen[1], "INTEGER[]" in seen[2]] == [
        True,
        True,
        True,
    ]


@pytest.mark.postgres
def test_postgres_plans_each_statement_with_its_list(postgres_url: str) -> None:
    """A statement run many times is never prepared on the server, so it is always planned
    with the array it is given (a generic plan cannot hash the list: every row against every
    id); the session's plan cache mode is left alone (the foreign-key checks keep their
    cached plans)."""
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            for n in range(12):  # past psycopg's threshold (5) and PostgreSQL's (5 more)
                ids = list(range(n + 1))
                conn.execute(
                    text("SELECT count(*) FROM generate_series(1, 50) AS g WHERE g = ANY(:ids)"),
                    {"ids": ids},
                )
            prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
            assert prepared == 0
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
    finally:
        engine.dispose()
