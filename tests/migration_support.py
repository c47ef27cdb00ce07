"""What every migration test does: an empty database (SQLite, or the test PostgreSQL
database with its schema dropped), built at a revision's ``down_revision`` as Alembic reads
it, rows inserted by the test, then upgraded to head.

    @pytest.mark.parametrize("kind", BACKENDS)
    def test_0009_keeps_the_data(kind: str, tmp_path: Path) -> None:
        engine = build_at_down_revision(empty_database(kind, tmp_path), "0009")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO ..."))
        upgrade_to_head(engine)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from newsletter.db import MIGRATIONS, _alembic_config, make_engine
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def empty_database(kind: str, tmp_path: Path) -> str:
    """The URL of an empty database of *kind* (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'migration.db'}"
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("NEWSLETTER_TEST_POSTGRES_URL is unset")
        pytest.skip("NEWSLETTER_TEST_POSTGRES_URL is not set")
    engine = make_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:  # the shared test engine re-creates the schema later
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return POSTGRES_URL


def down_revision(revision: str) -> str:
    """The revision *revision* upgrades from, read from Alembic's script directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    previous = ScriptDirectory.from_config(config).get_revision(revision).down_revision
    assert isinstance(previous, str), previous
    return previous


def build_at_down_revision(url: str, revision: str) -> Engine:
    """An engine on *url* whose schema is at *revision*'s down_revision."""
    engine = make_engine(url)
    command.upgrade(_alembic_config(engine), down_revision(revision))
    return engine


def upgrade_to_head(engine: Engine) -> None:
    command.upgrade(_alembic_config(engine), "head")
