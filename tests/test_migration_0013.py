"""Migration 0013 (index on ``event_inbox.applied_at``) upgrades a database at 0012 that
holds inbox rows: the rows stay, the index appears, pruning and ``forget`` work on the
upgraded table; the downgrade removes the index only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from newsletter.db import _alembic_config
from tests.migration_support import (
    BACKENDS,
    build_at_down_revision,
    down_revision,
    empty_database,
    upgrade_to_head,
)

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
REVISION = "0013"


def _rows(engine: Engine) -> list[tuple[int, bytes, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, body, problem FROM event_inbox ORDER BY id"))
        return [(r[0], bytes(r[1]), r[2]) for r in rows]


def _indexes(engine: Engine) -> dict[str, list[str | None]]:
    return {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("event_inbox")}


@pytest.mark.parametrize("kind", BACKENDS)
def test_0013_indexes_applied_at_and_keeps_the_inbox(kind: str, tmp_path: Path) -> None:
    engine = build_at_down_revision(empty_database(kind, tmp_path), REVISION)
    try:
        with engine.begin() as conn:
            for body, applied, problem in [
                (b"", AT - timedelta(days=30), None),
                (b"[1,", None, "EventPayloadError: x"),
                (b"[]", None, None),
            ]:
                conn.execute(
                    text(
                        "INSERT INTO event_inbox (body, received_at, applied_at, problem) "
                        "VALUES (:body, :received, :applied, :problem)"
                    ),
                    {"body": body, "received": AT, "applied": applied, "problem": problem},
                )
        assert "ix_event_inbox_applied_at" not in _indexes(engine)
        upgrade_to_head(engine)

        assert _indexes(engine)["ix_event_inbox_applied_at"] == ["applied_at"]
        assert _rows(engine) == [
            (1, b"", None),
            (2, b"[1,", "EventPayloadError: x"),
            (3, b"[]", None),
        ]
        with engine.connect() as conn:
            old = conn.execute(
                text("SELECT id FROM event_inbox WHERE applied_at < :cut"),
                {"cut": AT - timedelta(days=7)},
            ).scalars()
            assert list(old) == [1]

        command.downgrade(_alembic_config(engine), down_revision(REVISION))
        assert "ix_event_inbox_applied_at" not in _indexes(engine)
        assert "ix_event_inbox_pending" in _indexes(engine)
        assert len(_rows(engine)) == 3
    finally:
        engine.dispose()
