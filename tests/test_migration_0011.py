"""Migration 0011 (history index) upgrades a database holding data from its down revision:
the index on deliveries ``(subscriber_id, item_id)`` becomes ``(subscriber_id, item_id,
kind)`` with every row in it, and the downgrade puts the old one back."""

from __future__ import annotations

from datetime import UTC, datetime
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

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _indexes(engine: Engine) -> dict[str, list[str | None]]:
    return {
        str(i["name"]): list(i["column_names"])
        for i in inspect(engine).get_indexes("deliveries")
        if str(i["name"]).startswith("ix_deliveries_subscriber")
    }


def _history(engine: Engine) -> list[tuple[int, str, str]]:
    """Subscriber 1's drip and campaign items, read the way the planner reads them."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT subscriber_id, item_id, kind FROM deliveries WHERE subscriber_id = 1 "
                "AND kind IN ('drip', 'campaign') ORDER BY item_id"
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.parametrize("kind", BACKENDS)
def test_0011_puts_kind_in_the_history_index_and_keeps_the_rows(kind: str, tmp_path: Path) -> None:
    engine = build_at_down_revision(empty_database(kind, tmp_path), "0011")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, timezone, status, tags, "
                "attributes, created_at, updated_at, soft_bounces) VALUES (1, 'p1', "
                "'a@example.com', 'UTC', 'active', '[]', '{}', :at, :at, 0)"
            ),
            {"at": AT},
        )
        for id, key, kind_, item in (
            (1, "drip:7:tips/a", "drip", "tips/a"),
            (2, "campaign:1:news/b", "campaign", "news/b"),
            (3, "test:1:tips/c", "test", "tips/c"),
        ):
            conn.execute(
                text(
                    "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, status, "
                    "attempts, due_at, created_at, updated_at) VALUES "
                    "(:id, :key, :kind, 1, :item, 'sent', 1, :at, :at, :at)"
                ),
                {"id": id, "key": key, "kind": kind_, "item": item, "at": AT},
            )
    assert _indexes(engine) == {"ix_deliveries_subscriber_item": ["subscriber_id", "item_id"]}
    upgrade_to_head(engine)
    assert _indexes(engine) == {
        "ix_deliveries_subscriber_item_kind": ["subscriber_id", "item_id", "kind"]
    }
    assert _history(engine) == [(1, "news/b", "campaign"), (1, "tips/a", "drip")]
    command.downgrade(_alembic_config(engine), down_revision("0011"))
    assert _indexes(engine) == {"ix_deliveries_subscriber_item": ["subscriber_id", "item_id"]}
    assert _history(engine) == [(1, "news/b", "campaign"), (1, "tips/a", "drip")]
    engine.dispose()
