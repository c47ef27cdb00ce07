"""Revision 0002 (``deliveries.message_nonce``): rows written before it survive, and the
first claim after it gives them their Message-ID's random part."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text

from newsletter.app import App
from newsletter.db import _alembic_config, make_engine
from newsletter.dispatch import deliver_due
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.conftest import NOW, POSTGRES_URL
from tests.mailbox import read_outbox

REVISION = "0002"


def down_revision(engine: Engine) -> str:
    script = ScriptDirectory.from_config(_alembic_config(engine))
    previous = script.get_revision(REVISION).down_revision
    assert isinstance(previous, str)
    return previous


def insert_old_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, first_name, timezone, status, "
                "tags, attributes, created_at, updated_at, soft_bounces) VALUES (1, "
                "'0123456789abcdef0123456789abcdef', 'old@example.org', 'Olga', 'UTC', "
                "'active', '[]', '{}', :now, :now, 0)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (id, key, kind, subscriber_id, item_id, status, "
                "attempts, due_at, created_at, updated_at) VALUES (1, 'old:1', 'drip', 1, "
                "'tips/meet-your-ql', 'queued', 0, :now, :now, :now)"
            ),
            {"now": NOW},
        )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_upgrade_keeps_rows_and_the_new_column_works(
    backend: str,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    request: pytest.FixtureRequest,
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        assert url == POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    if backend == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    config = _alembic_config(engine)
    command.upgrade(config, down_revision(engine))
    insert_old_rows(engine)
    command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT key, status, message_nonce FROM deliveries")).one()
    assert tuple(row) == ("old:1", "queued", None)
    engine.dispose()
    app = App(make_settings(database_url=url))
    deliver_due(app, now=NOW + timedelta(minutes=1))
    with app.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
    assert delivery.status == "sent"
    assert delivery.message_nonce is not None
    assert len(delivery.message_nonce) == 16
    mail = read_outbox(app.settings.effective_outbox_dir)[0]
    assert mail["Message-ID"] == f"<nl-1-1-{delivery.message_nonce}@shop.example>"
    app.close()
