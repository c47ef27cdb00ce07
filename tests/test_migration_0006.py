"""Migration 0006 (engagement events, tracked links, bounce reports, sunset notice) on a
database with data at its ``down_revision``: the data survives and the new schema works."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select, text

from newsletter.db import _alembic_config, upgrade
from newsletter.models import BounceReport, DeliveryLink, EngagementEvent, Subscriber
from tests.migration_support import (
    BACKENDS,
    build_at_down_revision,
    down_revision,
    empty_database,
)

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", BACKENDS)
def test_upgrade_from_the_previous_revision_keeps_the_data(kind: str, tmp_path: Path) -> None:
    engine = build_at_down_revision(empty_database(kind, tmp_path), "0006")
    config = _alembic_config(engine)
    previous = down_revision("0006")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, timezone, status, tags, "
                "attributes, created_at, updated_at, soft_bounces) VALUES (1, 'p1', "
                "'kim@example.org', 'UTC', 'active', '[]', '{}', :at, :at, 2)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, status, "
                "attempts, due_at, created_at, updated_at, sent_at) VALUES (7, 'k7', 'drip', 1, "
                "'tips/x', 'sent', 1, :at, :at, :at, :at)"
            ),
            {"at": AT},
        )
    upgrade(engine)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                select(Subscriber.email, Subscriber.soft_bounces, Subscriber.sunset_notice_at)
            ).one()
            assert tuple(row) == ("kim@example.org", 2, None)
            conn.execute(
                insert(EngagementEvent),
                [
                    {
                        "delivery_id": 7,
                        "subscriber_id": 1,
                        "kind": "open",
                        "human": True,
                        "reason": "human",
                        "source": "tracking",
                        "at": AT,
                    }
                ],
            )
            conn.execute(
                insert(DeliveryLink), [{"delivery_id": 7, "link_index": 0, "url": "https://a"}]
            )
            conn.execute(
                insert(BounceReport),
                [{"report_key": "k" * 64, "kind": "hard", "outcome": "x", "received_at": AT}],
            )
            conn.execute(text("UPDATE subscribers SET sunset_notice_at = :at"), {"at": AT})
            assert conn.execute(select(EngagementEvent.kind)).scalar() == "open"
            assert conn.execute(select(DeliveryLink.url)).scalar() == "https://a"
        command.downgrade(config, previous)  # and back, cleanly
        with engine.connect() as conn:
            names = set(engine.dialect.get_table_names(conn))
        assert "engagement_events" not in names
        assert "subscribers" in names
    finally:
        upgrade(engine)  # the shared PostgreSQL schema stays at head for the other tests
        engine.dispose()
