"""Migration 0004 (API keys, events, enrollment event/exit, campaign --where) upgrades a
database holding data at its down revision, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text

from newsletter.db import MIGRATIONS, make_engine
from newsletter.models import ApiKey, Campaign, Enrollment, Subscriber, SubscriberEvent
from tests.conftest import NOW, POSTGRES_URL

REVISION = "0004"


def config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        return make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    if not POSTGRES_URL:
        pytest.skip("NEWSLETTER_TEST_POSTGRES_URL is not set")
    engine = make_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return engine


def test_upgrade_keeps_data_and_the_new_schema_works(fresh_engine: Engine) -> None:
    cfg = config(fresh_engine)
    down = ScriptDirectory.from_config(cfg).get_revision(REVISION).down_revision
    assert isinstance(down, str)
    command.upgrade(cfg, down)
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, first_name, timezone, status, "
                "tags, attributes, created_at, updated_at, soft_bounces) VALUES (1, 'p1', "
                "'a@example.org', 'A', 'UTC', 'active', '[\"vip\"]', '{\"plan\": \"pro\"}', "
                ":now, :now, 0)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "
                "next_due_at, created_at) VALUES (1, 1, 'back-pain-basics', 'active', 2, :now, "
                ":now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO campaigns (id, name, item_id, state, include_tags, exclude_tags, "
                "pause_drips, audience_cursor, audience_frozen, audience_count, created_at, "
                "updated_at) VALUES (1, 'spring', 'campaigns/seven-day-reset', 'draft', '[]', "
                "'[]', false, 0, false, 0, :now, :now)"
            ),
            {"now": NOW},
        )
    command.upgrade(cfg, "head")
    from sqlalchemy.orm import Session

    with Session(fresh_engine) as session, session.begin():
        subscriber = session.scalars(select(Subscriber)).one()
        assert (subscriber.email, subscriber.attributes) == ("a@example.org", {"plan": "pro"})
        enrollment = session.scalars(select(Enrollment)).one()
        assert (enrollment.position, enrollment.event, enrollment.exited_at) == (2, None, None)
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.where_attributes is None
        enrollment.event = {"name": "purchase", "id": "o-1", "properties": {"product": "Ball"}}
        campaign.where_attributes = {"plan": "pro"}
        session.add(
            ApiKey(name="shop", scope="write", key_hash="0" * 64, prefix="nl_abc", created_at=NOW)
        )
        session.add(
            SubscriberEvent(
                key="o-1", subscriber_id=1, name="purchase", properties={}, received_at=NOW
            )
        )
    with Session(fresh_engine) as session:
        assert session.scalars(select(Enrollment.event)).one()["properties"] == {"product": "Ball"}
        assert session.scalars(select(Campaign.where_attributes)).one() == {"plan": "pro"}
        assert session.scalars(select(ApiKey.name)).one() == "shop"
        assert session.scalars(select(SubscriberEvent.key)).one() == "o-1"
    command.downgrade(cfg, down)
    command.upgrade(cfg, "head")
    if fresh_engine.dialect.name == "postgresql":  # leave the shared database as it was
        with fresh_engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        command.upgrade(cfg, "head")
    fresh_engine.dispose()
