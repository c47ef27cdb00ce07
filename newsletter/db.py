"""The database edge: engine creation, sessions and migrations."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter import sqlite_writers
from newsletter.errors import NewsletterError

MIGRATIONS = Path(__file__).parent / "migrations"
# ``RETURNING`` (used by the ledger, subscribe and events) arrived in SQLite 3.35.0.
SQLITE_FLOOR = (3, 35, 0)
SQLITE_SYNCHRONOUS = ("full", "normal")  # PRAGMA synchronous values offered
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024  # SQLite's own default is about 4 MB (1,000 pages)
log = logging.getLogger(__name__)


class DatabaseError(NewsletterError):
    """The database is unreachable or not migrated."""


def make_engine(url: str, *, sqlite_synchronous: str = "full", **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys.

    ``sqlite_synchronous`` (``SQLITE_SYNCHRONOUS``): ``full`` (the default) flushes the WAL
    to disk at every commit, so a commit survives a power cut or an operating-system crash,
    not only a crash of the process; ``normal`` flushes only at checkpoints (a power cut may
    lose the last transactions). Ignored on PostgreSQL, whose own ``synchronous_commit``
    rules there."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        check_sqlite_version(sqlite3.sqlite_version_info)
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise DatabaseError(
                f"unknown SQLite synchronous mode {sqlite_synchronous!r}: use one of "
                + ", ".join(SQLITE_SYNCHRONOUS)
            )
        # A ``file:`` URI (``?mode=ro&uri=true``) names an existing file: nothing to create.
        if parsed.database and parsed.database != ":memory:" and not _is_uri(parsed.database):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", partial(_sqlite_pragmas, sqlite_synchronous.upper()))
        if parsed.database and parsed.database != ":memory:" and not _is_uri(parsed.database):
            # Checkpoints leave the committing request for a background thread.
            event.listen(engine, "commit", Checkpointer(engine, Path(parsed.database)).committed)
        # "BEGIN IMMEDIATE" (one writer at a time), this process's writers taking turns.
        sqlite_writers.install(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        # Every statement planned with its values (see ``UNPREPARED``).
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("prepare_threshold", UNPREPARED)
        kwargs["connect_args"] = connect_args
    return create_engine(url, **kwargs)


# psycopg prepares a statement on the server once it has run it five times, and after five
# more PostgreSQL may keep one *generic* plan for it, planned without the values. The id
# lists travel as one array (``bound_lists``: ``= ANY(integer[])``), which PostgreSQL hashes
# only when it plans with the array's value: a generic plan compares every row with every
# id (a 1,000-row claim's attention read went from 5 ms to 206 ms mid-run once autovacuum
# had analysed the table). So the app's statements are never prepared (``None``): each is
# parsed and planned with its values, well under a millisecond. Not ``plan_cache_mode =
# force_custom_plan`` for the session: that also re-plans the foreign-key checks PostgreSQL
# runs per inserted row (cached plans of its own), which made a 200,000-row ledger
# ``INSERT ... SELECT`` 2.3x slower (5.0-5.4 s -> 11.7-12.2 s, measured).
UNPREPARED = None


def check_sqlite_version(version: tuple[int, ...]) -> None:
    """Refuse an SQLite library older than ``SQLITE_FLOOR`` with what to do about it."""
    if tuple(version) < SQLITE_FLOOR:
        found = ".".join(map(str, version))
        wanted = ".".join(map(str, SQLITE_FLOOR))
        raise DatabaseError(
            f"this Python's SQLite is {found}; newsletter needs {wanted} or newer: use a "
            "Python built against a newer SQLite (python.org and uv's builds are), or "
            "PostgreSQL (NEWSLETTER_DATABASE_URL)"
        )


def _is_uri(database: str) -> bool:
    return database.startswith("file:")


def _sqlite_pragmas(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")  # one of SQLITE_SYNCHRONOUS
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={sqlite_writers.BUSY_TIMEOUT_MS}")
    # No automatic checkpoint at commit (it ran inside whichever request committed past
    # 1,000 pages); ``Checkpointer`` does it in the background instead.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class Checkpointer:
    """Copies the SQLite WAL back into the database from a background thread.

    After a commit, one ``stat`` of the ``-wal`` file; past ``WAL_CHECKPOINT_BYTES`` a
    daemon thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its own
    (passive: it never blocks writers or readers, and sqlite3 releases the GIL while it
    runs). SQLite still checkpoints when the last connection closes.
    """

    def __init__(self, engine: Engine, database: Path) -> None:
        self._engine = engine
        self._wal = database.with_name(database.name + "-wal")
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self, _connection: Any) -> None:
        try:
            size = self._wal.stat().st_size
        except OSError:
            return
        if size < WAL_CHECKPOINT_BYTES:
            return
        self._wanted.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                raw = self._engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
            except Exception:  # the next commit asks again; never kill the thread
                log.exception("SQLite WAL checkpoint failed; it is retried after a commit")


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """Keep SQLite's writer turn across several transactions of this thread (each
    transaction takes its turn anyway: ``newsletter.sqlite_writers``). PostgreSQL: nothing."""
    return sqlite_writers.hold(engine)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


@dataclass(frozen=True)
class Migration:
    revision: str
    title: str  # the first line of the revision's docstring


def upgrade(engine: Engine) -> list[Migration]:
    """Apply every pending migration (idempotent); return those applied, oldest first."""
    try:
        pending = pending_migrations(engine)
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{exc.orig}; check NEWSLETTER_DATABASE_URL"
        ) from exc
    script = ScriptDirectory.from_config(_alembic_config(engine))
    ordered = [s for s in reversed(list(script.walk_revisions())) if s.revision in pending]
    return [Migration(s.revision, (s.doc or "").strip().splitlines()[0]) for s in ordered]


def database_exists(url: str) -> bool:
    """Whether ``url`` names a database that was created (migrated) before.

    SQLite: the file exists (checked without creating it). PostgreSQL: Alembic's version
    table is there. An unreachable server raises ``DatabaseError``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        return name in ("", ":memory:") or Path(name).is_file()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot reach the database at {parsed.render_as_string(hide_password=True)}: "
            f"{exc.orig}; check NEWSLETTER_DATABASE_URL"
        ) from exc
    finally:
        engine.dispose()


def pending_migrations(engine: Engine) -> list[str]:
    script = ScriptDirectory.from_config(_alembic_config(engine))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = {s.revision for s in script.walk_revisions()}
    if current & heads:
        done = set()
        for rev in current:
            for s in script.iterate_revisions(rev, "base"):
                done.add(s.revision)
        return sorted(heads - done)
    return sorted(heads)
