"""Migration 0005 (outgoing webhooks) upgrades a database holding data from its down
revision: the data survives and the new tables work (unique event id, one delivery per
event and endpoint, cascade on endpoint removal)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.migration_support import (
    BACKENDS,
    build_at_down_revision,
    empty_database,
    upgrade_to_head,
)

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return empty_database(request.param, tmp_path)


def test_0005_keeps_the_data_and_adds_the_webhook_tables(empty_url: str) -> None:
    engine = build_at_down_revision(empty_url, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (public_id, email, timezone, status, tags, attributes, "
                "created_at, updated_at, soft_bounces) VALUES ('p1', 'a@example.com', 'UTC', "
                "'active', '[\"x\"]', '{}', :at, :at, 0)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (key, kind, subscriber_id, item_id, status, attempts, "
                "due_at, created_at, updated_at) SELECT 'k1', 'drip', id, 'tips/a', 'sent', 1, "
                ":at, :at, :at FROM subscribers"
            ),
            {"at": AT},
        )
    upgrade_to_head(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT email, status FROM subscribers")).one() == (
            "a@example.com",
            "active",
        )
        assert conn.execute(text("SELECT key, status FROM deliveries")).one() == ("k1", "sent")
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (url, events, secret, enabled, created_at, "
                "updated_at) VALUES ('https://x.example/h', '[\"email.sent\"]', 'whsec_s', "
                ":t, :at, :at)"
            ),
            {"at": AT, "t": True},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_events (public_id, type, body, created_at) "
                "VALUES ('evt_1', 'email.sent', '{}', :at)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, "
                "next_attempt_at, created_at, updated_at) SELECT e.id, w.id, 'pending', 0, "
                ":at, :at, :at FROM webhook_events e, webhook_endpoints w"
            ),
            {"at": AT},
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, "
                "next_attempt_at, created_at, updated_at) SELECT e.id, w.id, 'pending', 0, "
                ":at, :at, :at FROM webhook_events e, webhook_endpoints w"
            ),
            {"at": AT},
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_events (public_id, type, body, created_at) "
                "VALUES ('evt_1', 'email.sent', '{}', :at)"
            ),
            {"at": AT},
        )
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys=ON"))
        conn.execute(text("DELETE FROM webhook_endpoints"))
        assert conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar() == 0
    engine.dispose()
