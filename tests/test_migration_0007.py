"""Migration 0007 (attention): a database at its ``down_revision`` with real rows upgrades
to head, the rows survive, and the new columns and tables work."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from newsletter.db import upgrade
from tests.conftest import NOW, _postgres_engine
from tests.migration_support import BACKENDS, build_at_down_revision, empty_database

REVISION = "0007"


@pytest.mark.parametrize("dialect", BACKENDS)
def test_upgrade_keeps_rows_and_adds_the_attention_schema(dialect: str, tmp_path: Path) -> None:
    engine = build_at_down_revision(empty_database(dialect, tmp_path), REVISION)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, timezone, status, tags, attributes,"
                " created_at, updated_at, soft_bounces) VALUES (1, 'p1', 'a@example.org', 'UTC',"
                " 'active', '[]', '{}', :now, :now, 0)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO campaigns (id, name, item_id, state, include_tags, exclude_tags,"
                " pause_drips, audience_cursor, audience_frozen, audience_count, created_at,"
                " updated_at) VALUES (1, 'c', 'campaigns/x', 'draft', '[]', '[]', false, 0,"
                " false, 0, :now, :now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, campaign_id,"
                " status, attempts, due_at, created_at, updated_at) VALUES (1, 'campaign:1:1',"
                " 'campaign', 1, 'campaigns/x', 1, 'queued', 0, :now, :now, :now)"
            ),
            {"now": NOW},
        )
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT priority, topic FROM campaigns")).one() == (2, None)
        assert conn.execute(text("SELECT key, deferred_from FROM deliveries")).one() == (
            "campaign:1:1",
            None,
        )
        conn.execute(
            text(
                "INSERT INTO delivery_deferrals (delivery_id, subscriber_id, at, until, reason)"
                " VALUES (1, 1, :now, :now, 'marketing cap 1/1d reached')"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO subscriber_preferences (subscriber_id, topics_off, frequency,"
                " updated_at) VALUES (1, '[\"offers\"]', 'weekly', :now)"
            ),
            {"now": NOW},
        )
        assert conn.execute(text("SELECT count(*) FROM delivery_deferrals")).scalar() == 1
        assert (
            conn.execute(text("SELECT frequency FROM subscriber_preferences")).scalar() == "weekly"
        )
    engine.dispose()
    if dialect == "postgresql":  # leave the shared database migrated and empty for others
        from tests.conftest import truncate_all

        truncate_all(_postgres_engine())
