"""Migration 0012 (event inbox) upgrades a database holding data from its down revision:
stored events stay, the inbox table and its partial pending index appear (on PostgreSQL
with the body stored uncompressed), the unread ``ix_provider_events_event`` is gone; the
downgrade puts the index back and removes the table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from newsletter.db import _alembic_config
from newsletter.models import EventInbox
from tests.migration_support import (
    BACKENDS,
    build_at_down_revision,
    down_revision,
    empty_database,
    upgrade_to_head,
)

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
REVISION = "0012"


def _events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT logical_key, event FROM provider_events ORDER BY id"))
        return [(r[0], r[1]) for r in rows]


def _pending_predicate(engine: Engine) -> str:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_event_inbox_pending'")
            ).scalar_one()
            return str(definition.split(" WHERE ", 1)[1]).replace("(", "").replace(")", "")
        sql = conn.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE type = 'index'"
                " AND name = 'ix_event_inbox_pending'"
            )
        ).scalar_one()
        return str(sql.split(" WHERE ", 1)[1].strip())


@pytest.mark.parametrize("kind", BACKENDS)
def test_0012_adds_the_inbox_and_keeps_the_events(kind: str, tmp_path: Path) -> None:
    engine = build_at_down_revision(empty_database(kind, tmp_path), REVISION)
    try:
        with engine.begin() as conn:
            for n, name in enumerate(["delivered", "bounce"]):
                conn.execute(
                    text(
                        "INSERT INTO provider_events (sg_event_id, logical_key, event, "
                        "occurred_at, payload, received_at) VALUES (:id, :key, :event, :at, "
                        "'{}', :at)"
                    ),
                    {"id": f"sg{n}", "key": f"k{n}", "event": name, "at": AT},
                )
        upgrade_to_head(engine)

        assert _events(engine) == [("k0", "delivered"), ("k1", "bounce")]
        inspector = inspect(engine)
        columns = {c["name"]: c["nullable"] for c in inspector.get_columns("event_inbox")}
        assert columns == {
            "id": False,
            "body": False,
            "received_at": False,
            "applied_at": True,
            "problem": True,
            "report": True,
        }
        names = {i["name"] for i in inspector.get_indexes("provider_events")}
        assert "ix_provider_events_event" not in names
        assert {"ix_provider_events_email_hash", "ix_provider_events_delivery_id"} <= names
        assert _pending_predicate(engine) == "applied_at IS NULL AND problem IS NULL"
        with engine.begin() as conn:  # the model writes and reads the migrated table
            conn.execute(
                EventInbox.__table__.insert().values(body=b"[]", received_at=AT)  # type: ignore[attr-defined]
            )
            stored = conn.execute(text("SELECT body FROM event_inbox")).scalar_one()
            assert bytes(stored) == b"[]"
            if kind == "postgresql":
                storage = conn.execute(
                    text(
                        "SELECT attstorage FROM pg_attribute WHERE attrelid = "
                        "'event_inbox'::regclass AND attname = 'body'"
                    )
                ).scalar_one()
                assert storage == "e"

        command.downgrade(_alembic_config(engine), down_revision(REVISION))
        inspector = inspect(engine)
        assert "event_inbox" not in inspector.get_table_names()
        names = {i["name"] for i in inspector.get_indexes("provider_events")}
        assert "ix_provider_events_event" in names
        assert _events(engine) == [("k0", "delivered"), ("k1", "bounce")]
    finally:
        engine.dispose()
