"""Migration 0010 (drip outcomes) upgrades a database holding data from its down revision:
an enrollment already waiting on a final ledger row is queued for the planner, the trigger
queues drip rows that become final afterwards (and nothing else), the two unread
enrollment indexes are gone; the downgrade puts them back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, inspect, text

from newsletter.db import _alembic_config
from tests.migration_support import (
    BACKENDS,
    build_at_down_revision,
    down_revision,
    empty_database,
    upgrade_to_head,
)

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _ledger_row(conn: Connection, id: int, enrollment: int | None, item: str, status: str) -> None:
    kind = "drip" if enrollment else "campaign"
    key = f"drip:{enrollment}:{item}" if enrollment else f"campaign:1:{item}"
    conn.execute(
        text(
            "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, enrollment_id, "
            "step, status, attempts, due_at, created_at, updated_at) VALUES "
            "(:id, :key, :kind, 1, :item, :enrollment, 0, :status, 0, :at, :at, :at)"
        ),
        {
            "id": id,
            "key": key,
            "kind": kind,
            "item": item,
            "enrollment": enrollment,
            "status": status,
            "at": AT,
        },
    )


def _queue(conn: Connection) -> list[tuple[int, int]]:
    rows = conn.execute(
        text("SELECT enrollment_id, delivery_id FROM drip_outcomes ORDER BY id")
    ).all()
    return [(r[0], r[1]) for r in rows]


def _predicate(engine: Engine, name: str) -> str:
    """The WHERE clause of a partial index, as the database stored it (PostgreSQL's casts
    and parentheses taken out)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}
            ).scalar_one()
            where = str(definition.split(" WHERE ", 1)[1]).replace("::text", "")
            return where.replace("(", "").replace(")", "")
        sql = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}
        ).scalar_one()
        return str(sql.split(" WHERE ", 1)[1].strip())


@pytest.mark.parametrize("kind", BACKENDS)
def test_0010_queues_waiting_enrollments_and_triggers_on_outcomes(
    kind: str, tmp_path: Path
) -> None:
    engine = build_at_down_revision(empty_database(kind, tmp_path), "0010")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, timezone, status, tags, "
                "attributes, created_at, updated_at, soft_bounces) VALUES (1, 'p1', "
                "'a@example.com', 'UTC', 'active', '[]', '{}', :at, :at, 0)"
            ),
            {"at": AT},
        )
        for id, sequence, last, due in (
            (7, "a", "tips/sent", None),  # waiting; its item was sent: queue it
            (8, "b", "tips/queued", None),  # waiting; its item is still queued
            (9, "c", "tips/old", AT),  # due: not waiting on anything
        ):
            conn.execute(
                text(
                    "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "
                    "last_item_id, next_due_at, created_at) "
                    "VALUES (:id, 1, :sequence, 'active', 1, :last, :due, :at)"
                ),
                {"id": id, "sequence": sequence, "last": last, "due": due, "at": AT},
            )
        _ledger_row(conn, 1, 7, "tips/sent", "sent")
        _ledger_row(conn, 2, 8, "tips/queued", "queued")
        _ledger_row(conn, 3, 9, "tips/old", "sent")
        _ledger_row(conn, 4, None, "news/one", "queued")
    upgrade_to_head(engine)
    names = {i["name"] for i in inspect(engine).get_indexes("enrollments")}
    assert "ix_enrollments_due" not in names
    assert "ix_enrollments_subscriber_id" not in names
    assert _predicate(engine, "ix_enrollments_active_due") == (
        "status = 'active' AND next_due_at IS NOT NULL"
    )
    with engine.begin() as conn:
        assert _queue(conn) == [(7, 1)]
        conn.execute(text("UPDATE deliveries SET status = 'leased' WHERE id = 2"))
        assert _queue(conn) == [(7, 1)]  # not final yet
        conn.execute(text("UPDATE deliveries SET status = 'sent' WHERE id IN (2, 4)"))
        assert _queue(conn) == [(7, 1), (8, 2)]  # the drip row, not the campaign row
        conn.execute(text("UPDATE deliveries SET status = 'unknown' WHERE id = 2"))
        conn.execute(text("UPDATE deliveries SET error = 'x' WHERE id = 2"))
        assert _queue(conn) == [(7, 1), (8, 2)]  # final -> final: queued once
    command.downgrade(_alembic_config(engine), down_revision("0010"))
    names = {i["name"] for i in inspect(engine).get_indexes("enrollments")}
    assert {"ix_enrollments_due", "ix_enrollments_subscriber_id"} <= names
    assert _predicate(engine, "ix_enrollments_active_due") == "status = 'active'"
    assert "drip_outcomes" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # no trigger left behind to write to a missing table
        conn.execute(text("UPDATE deliveries SET status = 'queued' WHERE id = 2"))
        conn.execute(text("UPDATE deliveries SET status = 'sent' WHERE id = 2"))
    engine.dispose()
