"""SQLite: the writers of one process take turns, first come first served.

Every SQLite transaction here starts with ``BEGIN IMMEDIATE`` (one writer at a time).
Left to SQLite, a writer that finds the database busy sleeps and polls (the busy
handler), so a thread that commits and begins again at once -- a scheduled job working
through batches -- overtakes one that is sleeping, again and again, until that one hits
the busy timeout (30 s). So each engine gets a ``TurnLock``: a transaction queues on it
before ``BEGIN IMMEDIATE`` and hands it to the next in line once its ``COMMIT`` or
``ROLLBACK`` is done. A subscribe then waits for at most the transactions queued before
it, never behind a job that keeps beginning again.

The turn belongs to a DBAPI connection (not a thread): it is handed on after that
connection's commit or rollback, and, as a backstop, when the connection goes back to the
pool, is invalidated or closed. A thread that already holds the turn (through another
connection, or ``hold``) begins without queueing, so nesting behaves as it did before:
its ``BEGIN IMMEDIATE`` waits for the busy timeout, then fails ("database is locked").

Writers in other processes cannot join that queue. Between processes, ``BEGIN IMMEDIATE``
is tried again every millisecond while another process writes (``_begin_immediate``),
instead of SQLite's busy handler, whose growing sleeps let a process that commits and
begins again keep the database for seconds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # each SQLite connection's busy timeout (``PRAGMA busy_timeout``)
TURN_TIMEOUT_SECONDS = BUSY_TIMEOUT_MS / 1000  # as long; then BEGIN IMMEDIATE decides


class TurnLock:
    """A lock handed to waiters in the order they asked (FIFO), held by a key object."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: object | None = None
        self._thread: int | None = None  # the thread that took the turn
        self._waiters: deque[tuple[object, int, threading.Event]] = deque()
        self.handovers = 0  # how many times the turn passed to a waiter (for tests)

    def held_here(self) -> bool:
        """Whether the calling thread holds the turn."""
        return self._holder is not None and self._thread == threading.get_ident()

    def acquire(self, holder: object, *, timeout: float = TURN_TIMEOUT_SECONDS) -> bool:
        """Wait for the turn; False after ``timeout`` (nothing is held then)."""
        me = threading.get_ident()
        with self._mutex:
            if self._holder is None and not self._waiters:
                self._holder, self._thread = holder, me
                return True
            ready = threading.Event()
            waiter = (holder, me, ready)
            self._waiters.append(waiter)
        if ready.wait(timeout):
            return True
        with self._mutex:
            if self._holder is holder:  # handed over as the wait ran out
                return True
            self._waiters.remove(waiter)
            return False

    def release(self, holder: object) -> bool:
        """Hand the turn to the next waiter; False (nothing done) if ``holder`` lacks it."""
        with self._mutex:
            if self._holder is not holder or holder is None:
                return False
            if self._waiters:
                self._holder, self._thread, ready = self._waiters.popleft()
                self.handovers += 1
                ready.set()
            else:
                self._holder = self._thread = None
            return True


_LOCKS: weakref.WeakKeyDictionary[Engine, TurnLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def turn_lock(engine: Engine) -> TurnLock:
    with _LOCKS_LOCK:
        lock = _LOCKS.get(engine)
        if lock is None:
            lock = _LOCKS[engine] = TurnLock()
        return lock


@contextmanager
def hold(engine: Engine) -> Iterator[None]:
    """Keep the turn across several transactions of this thread (they begin without
    queueing). A no-op for other databases, and when this thread holds it already."""
    if engine.dialect.name != "sqlite":
        yield
        return
    lock = turn_lock(engine)
    if lock.held_here():
        yield
        return
    key = object()
    taken = lock.acquire(key)
    try:
        yield
    finally:
        if taken:
            lock.release(key)


def _raw(connection: Any) -> Any:
    """The DBAPI connection behind a pool proxy (or the DBAPI connection itself)."""
    return getattr(connection, "dbapi_connection", connection)


def install(engine: Engine) -> None:
    """Queue ``engine``'s transactions on its ``TurnLock`` (``begin`` issues BEGIN IMMEDIATE)."""
    lock = turn_lock(engine)
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def begin(connection: Any) -> None:
        raw = _raw(connection.connection)
        if not lock.held_here():
            lock.acquire(raw)  # on timeout: no turn; BEGIN IMMEDIATE waits on its own
        try:
            _begin_immediate(connection)
        except BaseException:
            lock.release(raw)
            raise

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            lock.release(_raw(dbapi_connection))

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            lock.release(_raw(dbapi_connection))

    def gone(dbapi_connection: Any, *_args: Any) -> None:
        lock.release(_raw(dbapi_connection))

    # After the DBAPI commit/rollback, not before (``commit`` events run before it):
    # the next writer's BEGIN IMMEDIATE then finds the database free.
    setattr(dialect, "do_commit", do_commit)  # noqa: B010 (an instance's own method)
    setattr(dialect, "do_rollback", do_rollback)  # noqa: B010
    event.listen(engine, "begin", begin)
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
        event.listen(engine, name, gone)


POLL_SECONDS = 0.001  # between two tries of BEGIN IMMEDIATE while another process writes


def _begin_immediate(connection: Any) -> None:
    """``BEGIN IMMEDIATE``, tried every ``POLL_SECONDS`` while another process holds the
    writer, for up to ``TURN_TIMEOUT_SECONDS`` (then SQLite's "database is locked", as
    SQLAlchemy's ``OperationalError``).

    SQLite's own busy handler sleeps longer and longer between tries (1, 2, 5 ... 25, 50,
    100 ms), so a writer of another process that commits and begins again (a sending
    worker going through its batches) takes the database back again and again while this
    one sleeps: signups waited up to 0.6 s behind a send that holds the writer for 35 ms
    at a time. Tried every millisecond, a waiter gets in at the next gap.

    The tries go to the DBAPI connection: a failed statement through SQLAlchemy rolls the
    connection back, which would hand this process's turn to the next thread while this
    one still waits. Only the last try, when the time is up or the error is not "busy",
    goes through SQLAlchemy, so the caller sees its error.
    """
    raw = _raw(connection.connection)
    deadline = time.monotonic() + TURN_TIMEOUT_SECONDS
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    break
            time.sleep(POLL_SECONDS)
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # raises as SQLAlchemy does, or began
    finally:
        _restore_busy_timeout(raw)


def _restore_busy_timeout(raw: Any) -> None:
    """The connection's busy timeout back to ``BUSY_TIMEOUT_MS`` (what ``make_engine``
    sets), never hiding the error that ended the begin."""
    try:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error:
        log.warning("could not restore the SQLite busy timeout", exc_info=True)


def _busy(error: BaseException | None) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (SQLITE_BUSY, any variant)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.OperationalError) and code is not None and code & 0xFF == 5
