"""Shared fixtures: a real database (SQLite, and PostgreSQL when configured), an App,
factories. PostgreSQL runs when ``NEWSLETTER_TEST_POSTGRES_URL`` is set; with
``NEWSLETTER_REQUIRE_POSTGRES=1`` (CI's PostgreSQL pass) an unreachable PostgreSQL fails
the run instead of skipping.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text

from newsletter.app import App
from newsletter.db import MIGRATIONS, make_engine, upgrade
from newsletter.models import Base
from newsletter.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _test_postgres_url(url: str) -> str:
    """The test database's URL with ``synchronous_commit=off`` for every connection the
    tests, the app and its subprocesses open: a commit still reaches the server before it
    returns (a killed client loses nothing), only the server's own crash could lose the
    last few; it saves a WAL flush (about 1 ms here) per commit in the suite."""
    if not url or "options=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "options=-csynchronous_commit%3Doff"


POSTGRES_URL = _test_postgres_url(os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", ""))
# Set by .ci/run for its PostgreSQL pass: there, a skipped PostgreSQL test is a failure.
REQUIRE_POSTGRES = os.environ.get("NEWSLETTER_REQUIRE_POSTGRES", "") == "1"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock (seconds) that a test moves by hand: the rate limits' time
    (``create_web_app(..., monotonic=ticks)``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_pg_engine: Engine | None = None
_sqlite_template: Path | None = None
_head: str | None = None

# CI explores the same examples every run (a red CI must be reproducible); developers'
# runs stay random and keep finding new inputs (failures are saved in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    hypothesis_settings.load_profile("ci")


def _postgres_engine() -> Engine:
    """One migrated engine per test session; tables are emptied before each test."""
    global _pg_engine
    if _pg_engine is None:
        if not POSTGRES_URL:
            if REQUIRE_POSTGRES:
                pytest.fail(
                    "NEWSLETTER_REQUIRE_POSTGRES=1 but NEWSLETTER_TEST_POSTGRES_URL is unset"
                )
            pytest.skip("NEWSLETTER_TEST_POSTGRES_URL is not set")
        engine = make_engine(POSTGRES_URL)
        try:
            _recreate_schema(engine)
        except Exception as exc:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        _pg_engine = engine
    return _pg_engine


def _recreate_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)


def _at_head(engine: Engine) -> bool:
    """Whether the shared database is still at the head revision: a migration test drops
    the schema and leaves it at the revision it tested (one query per test)."""
    global _head
    if _head is None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        _head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
        if not exists:
            return False
        return bool(conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head)


def _migrated_sqlite(path: Path) -> str:
    """A migrated SQLite database at *path*: a copy of one file migrated once per session
    (the same bytes ``upgrade`` writes; the migrations themselves are tested on their own)."""
    global _sqlite_template
    if _sqlite_template is None:
        folder = tempfile.mkdtemp(prefix="newsletter-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "migrated.db"
        engine = make_engine(f"sqlite:///{template}")
        upgrade(engine)
        engine.dispose()
        _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


_EMPTY_ALL: str | None = None


def truncate_all(engine: Engine) -> None:
    """Empty every table and restart every id sequence, as ``TRUNCATE ... RESTART
    IDENTITY`` would, in one round trip: ``DELETE`` of the few rows a test leaves costs
    about 10 ms against about 80 ms for ``TRUNCATE`` of the schema's tables (children
    first, in foreign-key order). Tests must not rely on the physical order of rows."""
    global _EMPTY_ALL
    if engine.dialect.name == "postgresql" and not _at_head(engine):
        _recreate_schema(engine)
    with engine.begin() as conn:
        if _EMPTY_ALL is None:
            sequences = conn.execute(
                text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
            ).scalars()
            tables = reversed(Base.metadata.sorted_tables)
            statements = [f'DELETE FROM "{t.name}"' for t in tables]  # noqa: S608 - our own names
            statements += [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences.all()]
            _EMPTY_ALL = "; ".join(statements)
        conn.exec_driver_sql(_EMPTY_ALL)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL: SQLite in tmp_path, or the shared PostgreSQL."""
    if request.param == "sqlite":
        return _migrated_sqlite(tmp_path / "test.db")
    engine = _postgres_engine()
    truncate_all(engine)
    return POSTGRES_URL


@pytest.fixture
def postgres_url() -> str:
    """The shared PostgreSQL only, emptied (mark such tests ``postgres``)."""
    engine = _postgres_engine()
    truncate_all(engine)
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database only (for tests that need no PostgreSQL variant)."""
    return _migrated_sqlite(tmp_path / "test.db")


def base_environ(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {
        "NEWSLETTER_VAR_DIR": str(tmp_path / "var"),
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SECRET_KEY": "test-secret-key-newest,test-secret-key-old",
        "NEWSLETTER_BASE_URL": "https://news.example",
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_POSTAL_ADDRESS": "Backwise Ltd, 1 Test Street, 10115 Berlin, Germany",
        "NEWSLETTER_FROM_EMAIL": "tips@shop.example",
        "NEWSLETTER_FROM_NAME": "Backwise",
        "NEWSLETTER_ALLOWED_ORIGINS": "https://shop.example,http://127.0.0.1:8765",
        "NEWSLETTER_FORM_SECRET": "form-secret",
        "NEWSLETTER_DEFAULT_TIMEZONE": "Europe/Berlin",
        "NEWSLETTER_CONTENT_DIR": str(ROOT / "content"),
        "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates" / "emails"),
        "NEWSLETTER_CRON_FILE": str(ROOT / "cron.yaml"),
    }


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    """Settings over the test database; keyword overrides use variable suffixes."""

    def make(**overrides: str) -> Settings:
        environ = base_environ(tmp_path, db_url)
        environ.update({f"NEWSLETTER_{k.upper()}": v for k, v in overrides.items()})
        return load_settings(environ)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    application.close()


_counter = itertools.count(1)


@pytest.fixture
def unique_email() -> Callable[[], str]:
    def make(prefix: str = "reader") -> str:
        return f"{prefix}{next(_counter)}@example.org"

    return make


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str) -> dict[str, Any]:
    """Environment for CliRunner / subprocess runs of the CLI over the test database."""
    return base_environ(tmp_path, db_url)
