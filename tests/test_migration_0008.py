"""Migration 0008 (form sources) upgrades a database holding data from its down revision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

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


def test_0008_keeps_consent_records_and_adds_source_events(empty_url: str) -> None:
    engine = make_engine(empty_url)
    config = _alembic_config(engine)
    before = ScriptDirectory.from_config(config).get_revision("0008").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
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
    command.upgrade(config, "head")
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
