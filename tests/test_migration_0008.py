"""Migration 0008 (form sources) upgrades a database holding data from its down revision."""

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


def test_0008_keeps_consent_records_and_adds_source_events(empty_url: str) -> None:
    engine = build_at_down_revision(empty_url, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (public_id, email, timezone, status, tags, attributes, "
                "created_at, updated_at, soft_bounces) VALUES ('p1', 'a@example.com', 'UTC', "
                "'pending', '[]', '{}', :at, :at, 0)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO consent_events (subscriber_id, kind, at, source, consent_text) "
                "SELECT id, 'subscribed', :at, 'form', 'v1' FROM subscribers"
            ),
            {"at": AT},
        )
    upgrade_to_head(engine)
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT source, consent_text, source_event_id FROM consent_events")
        ).one()
        assert tuple(row) == ("form", "v1", None)
        conn.execute(
            text(
                "INSERT INTO source_events (source, event_id, received_at) VALUES ('s', 'e', :at)"
            ),
            {"at": AT},
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO source_events (source, event_id, received_at) VALUES ('s', 'e', :at)"
            ),
            {"at": AT},
        )
    engine.dispose()
