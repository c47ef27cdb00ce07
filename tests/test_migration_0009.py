"""Migration 0009 (due-order indexes) upgrades a database holding data from its down
revision: rows kept, both partial indexes present, and the claim / planner queries read
them in ``ORDER BY`` order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from newsletter.db import _alembic_config, make_engine
from tests.conftest import POSTGRES_URL

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    if not POSTGRES_URL:
        pytest.skip("NEWSLETTER_TEST_POSTGRES_URL is not set")
    engine = make_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return POSTGRES_URL


def test_0009_keeps_rows_and_adds_due_order_indexes(empty_url: str) -> None:
    engine = make_engine(empty_url)
    config = _alembic_config(engine)
    before = ScriptDirectory.from_config(config).get_revision("0009").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, timezone, status, tags, "
                "attributes, created_at, updated_at, soft_bounces) VALUES (1, 'p1', "
                "'a@example.com', 'UTC', 'active', '[]', '{}', :at, :at, 0)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "
                "next_due_at, created_at) VALUES (7, 1, 'welcome', 'active', 0, :at, :at)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, enrollment_id, "
                "step, status, attempts, due_at, created_at, updated_at) VALUES "
                "(3, 'drip:7:system/welcome', 'drip', 1, 'system/welcome', 7, 0, 'queued', "
                "0, :late, :at, :at), "
                "(2, 'drip:7:tips/a', 'drip', 1, 'tips/a', 7, 1, 'queued', 0, :at, :at, :at), "
                "(1, 'drip:7:tips/b', 'drip', 1, 'tips/b', 7, 2, 'sent', 1, :at, :at, :at)"
            ),
            {"at": AT, "late": AT + timedelta(minutes=1)},
        )
    command.upgrade(config, "0009")  # 0010 narrows the enrollments index again
    indexes = {
        table: {i["name"]: i for i in inspect(engine).get_indexes(table)}
        for table in ("deliveries", "enrollments")
    }
    assert indexes["deliveries"]["ix_deliveries_queued_due"]["column_names"] == ["due_at", "id"]
    assert indexes["enrollments"]["ix_enrollments_active_due"]["column_names"] == [
        "next_due_at",
        "id",
    ]
    with engine.begin() as conn:
        queued = conn.execute(
            text(
                "SELECT id, key, status FROM deliveries WHERE status = 'queued' ORDER BY due_at, id"
            )
        ).all()
        assert [tuple(r) for r in queued] == [
            (2, "drip:7:tips/a", "queued"),
            (3, "drip:7:system/welcome", "queued"),
        ]
        enrollment = conn.execute(
            text("SELECT id, status, next_due_at IS NOT NULL FROM enrollments")
        ).one()
        assert tuple(enrollment) == (7, "active", True)
        assert _partial(conn, "ix_deliveries_queued_due") == "status = 'queued'"
        assert _partial(conn, "ix_enrollments_active_due") == "status = 'active'"
    command.downgrade(config, before)
    names = {i["name"] for i in inspect(engine).get_indexes("deliveries")}
    assert "ix_deliveries_queued_due" not in names
    engine.dispose()


def _partial(conn, name: str) -> str:  # type: ignore[no-untyped-def]
    """The WHERE clause of a partial index, as the database stored it."""
    if conn.dialect.name == "postgresql":
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}
        ).scalar_one()
        where = definition.split(" WHERE ", 1)[1]
        return str(where.strip("()").replace("::text", "").replace("(", "").replace(")", ""))
    sql = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}
    ).scalar_one()
    return str(sql.split(" WHERE ", 1)[1].strip())
