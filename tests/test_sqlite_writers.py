"""SQLite writers of one process take turns in arrival order: a scheduled job that begins
transaction after transaction cannot make subscribe wait for the busy timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from newsletter import sqlite_writers
from newsletter.app import App
from newsletter.db import make_engine, transaction, writer_lock
from newsletter.group_commit import GroupCommit
from newsletter.jobs import deliver
from newsletter.models import Delivery, Subscriber
from newsletter.sqlite_writers import (
    BUSY_TIMEOUT_MS,
    TurnLock,
    _busy,
    turn_lock,
)
from newsletter.subscriptions import (
    SubscribeOutcome,
    SubscribeRequest,
    queue_confirmations,
    subscribe_in,
)
from tests.conftest import NOW

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_the_turn_goes_to_waiters_in_the_order_they_asked() -> None:
    lock = TurnLock()
    first = object()
    assert lock.acquire(first)
    order: list[int] = []
    threads = []
    for n in range(5):
        holder = object()

        def wait(n: int = n, holder: object = holder) -> None:
            assert lock.acquire(holder)
            order.append(n)
            lock.release(holder)

        thread = threading.Thread(target=wait)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while len(lock._waiters) <= n and time.monotonic() < deadline:  # queued in order
            time.sleep(0.001)
    lock.release(first)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.handovers == 5


def test_only_the_holder_releases_and_a_timed_out_waiter_leaves_the_queue() -> None:
    lock = TurnLock()
    holder, other = object(), object()
    assert lock.acquire(holder)
    assert lock.held_here()
    assert not lock.release(other)
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(lock.acquire(other, timeout=0.05)))
    thread.start()
    thread.join(5)
    assert outcome == [False]
    assert not lock._waiters
    assert lock.release(holder)
    assert not lock.held_here()
    assert lock.acquire(other)  # free again: taken at once


def test_the_turn_is_handed_on_after_commit_rollback_and_a_failed_transaction(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    lock = turn_lock(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        assert lock.held_here()
    assert not lock.held_here()
    conn2 = engine.connect()
    conn2.execute(text("INSERT INTO t VALUES (1)"))
    assert lock.held_here()
    conn2.rollback()
    assert not lock.held_here()
    with pytest.raises(RuntimeError, match="boom"):
        _fail_inside_a_transaction(engine)
    assert not lock.held_here()
    conn2.execute(text("SELECT 1"))  # a read-only transaction left open, then closed
    conn2.close()
    assert not lock.held_here()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    assert lock._holder is None
    engine.dispose()


def _fail_inside_a_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("boom")


def test_nested_transactions_of_one_thread_do_not_wait_for_themselves(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    with writer_lock(engine):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert turn_lock(engine).held_here()
    assert not turn_lock(engine).held_here()
    engine.dispose()


# Another process that writes batch after batch: 15 ms holding SQLite's writer, 2 ms
# between (a sending worker's claims and records). Plain sqlite3, SQLite's busy handler.
_OTHER_WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
ready = False
while True:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t (n) VALUES (NULL)")
    time.sleep(0.015)
    db.execute("COMMIT")
    if not ready:
        print("ready", flush=True)
        ready = True
    time.sleep(0.002)
"""


def _other_writer(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _OTHER_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_writer_gets_in_between_the_batches_of_another_process(tmp_path: Path) -> None:
    """SQLite's busy handler sleeps 1, 2, 5 ... 50, 100 ms between tries and kept missing
    the other process's 2 ms gaps: waits of 0.4 s at the median and over 1 s at worst.
    Tried every millisecond, each transaction waits about one of its batches."""
    engine = make_engine(f"sqlite:///{tmp_path / 'two.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    other = _other_writer(tmp_path / "two.db")
    waits: list[float] = []
    try:
        for _ in range(20):
            started = time.monotonic()
            with engine.begin() as conn:
                waits.append(time.monotonic() - started)
                conn.execute(text("INSERT INTO t (n) VALUES (NULL)"))
            time.sleep(0.007)
    finally:
        other.kill()
        other.wait()
    with engine.connect() as conn:
        # Every connection goes back to SQLite's busy timeout after its BEGIN.
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    engine.dispose()
    assert max(waits) < 0.25, sorted(waits)[-5:]


def test_a_writer_that_never_gets_in_fails_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_writers, "TURN_TIMEOUT_SECONDS", 0.2)
    engine = make_engine(f"sqlite:///{tmp_path / 'held.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    holder = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"), engine.begin():
            pass
        assert 0.2 <= time.monotonic() - started < 2
        raw = engine.raw_connection()  # the pool's one connection, the one that failed
        try:
            assert raw.driver_connection is not None
            timeout = raw.driver_connection.execute("PRAGMA busy_timeout").fetchone()
            assert timeout == (BUSY_TIMEOUT_MS,)
        finally:
            raw.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_writers_keep_their_order_while_another_process_writes(tmp_path: Path) -> None:
    """While a writer outside the engine (another process) holds the database, the first
    waiter keeps this process's turn as it polls and the others queue behind it: they get
    in in the order they asked. (Polling through SQLAlchemy rolled the connection back at
    each try, which handed the turn on: all eight polled at once, in any order.)"""
    engine = make_engine(f"sqlite:///{tmp_path / 'order.db'}", pool_size=10)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    other = sqlite3.connect(tmp_path / "order.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    order: list[int] = []

    def write(n: int) -> None:
        with engine.begin() as conn:
            order.append(n)
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.02)
        assert turn_lock(engine)._holder is not None  # the first waiter kept the turn
        assert order == []
    finally:
        other.execute("COMMIT")
        other.close()
    for thread in threads:
        thread.join(10)
    engine.dispose()
    assert order == list(range(8))


def test_a_busy_timeout_that_cannot_be_restored_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = sqlite3.connect(tmp_path / "c.db")
    closed.close()
    sqlite_writers._restore_busy_timeout(closed)  # would raise ProgrammingError unguarded
    assert "could not restore the SQLite busy timeout" in caplog.text


def test_only_sqlite_busy_counts_as_busy(tmp_path: Path) -> None:
    first = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    second = sqlite3.connect(tmp_path / "b.db", isolation_level=None, timeout=0)
    first.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as locked:
        second.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as syntax:
        second.execute("BEGIN NONSENSE")
    first.execute("ROLLBACK")
    assert _busy(locked.value)
    assert not _busy(syntax.value)
    assert not _busy(None)
    assert not _busy(ValueError("database is locked"))
    first.close()
    second.close()


def _subscribe_latencies(app: App, count: int, busy: Callable[[], bool]) -> list[float]:
    """Post ``count`` subscribes one after another through group commit (subscribe's own
    writer) while ``busy()``; each one's seconds from submit to its committed answer."""
    writer = GroupCommit(app.sessions)

    async def main() -> list[float]:
        latencies = []
        for n in range(count):
            if not busy():
                break
            wanted = SubscribeRequest(email=f"late{n}@example.org")
            started = time.monotonic()
            outcome = await writer.submit(
                lambda session, facts, w=wanted: subscribe_in(session, app, w, now=NOW, facts=facts)
            )
            latencies.append(time.monotonic() - started)
            assert outcome is SubscribeOutcome.CONFIRMATION_QUEUED
            await asyncio.sleep(0.01)
        return latencies

    try:
        return asyncio.run(main())
    finally:
        writer.close()


@SQLITE
def test_subscribe_is_not_starved_by_a_job_that_commits_back_to_back(app: App) -> None:
    """A job writing batch after batch with no pause (the planners' shape): before the
    turns, subscribe slept in SQLite's busy handler until the job ended or 30 s passed."""
    stop = threading.Event()
    batches = [0]

    def job() -> None:
        while not stop.is_set():
            with transaction(app.sessions) as session:
                session.execute(text("UPDATE subscribers SET first_name = first_name"))
                session.add(_pending(f"job{batches[0]}"))
                time.sleep(0.01)  # the batch's work, inside its transaction
            batches[0] += 1

    thread = threading.Thread(target=job)
    thread.start()
    try:
        time.sleep(0.1)
        latencies = _subscribe_latencies(app, 30, busy=lambda: True)
    finally:
        stop.set()
        thread.join(10)
    assert len(latencies) == 30
    assert batches[0] > 30  # the job ran all along
    assert max(latencies) < 0.5, sorted(latencies)[-5:]


def _pending(name: str) -> Subscriber:
    return Subscriber(
        email=f"{name}@example.org",
        public_id=name,
        timezone="Europe/Berlin",
        status="pending",
        created_at=NOW,
        updated_at=NOW,
    )


def _queue_confirmations(app: App, count: int) -> None:
    with transaction(app.sessions) as session:
        subscribers = [_pending(f"queued{n}") for n in range(count)]
        session.add_all(subscribers)
        session.flush()
        queue_confirmations(session, [s.id for s in subscribers], now=NOW)


@SQLITE
def test_subscribe_answers_promptly_while_the_deliver_job_runs(
    make_settings: Callable[..., Any],
) -> None:
    """The real ``deliver`` job over queued confirmations (claim, build, send, record in
    back-to-back transactions): every subscribe meanwhile is answered within a bound far
    under the busy timeout, and the job sends every email once."""
    app = App(make_settings(batch_size="50"))
    try:
        _queue_confirmations(app, 600)
        running = threading.Event()
        result: list[dict[str, Any]] = []

        def job() -> None:
            running.set()
            result.append(deliver(app, NOW))
            running.clear()

        thread = threading.Thread(target=job)
        thread.start()
        running.wait(5)
        latencies = _subscribe_latencies(app, 40, busy=running.is_set)
        thread.join(120)
        assert result
        assert result[0]["sent"] >= 600
        assert len(latencies) >= 5, "the job ended before subscribe could be measured"
        assert max(latencies) < 2.0, sorted(latencies)[-5:]
        with app.sessions() as session:
            statuses = session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
        # One confirmation each, sent or still queued (the job also took some new ones).
        assert sum(dict(statuses).values()) == 600 + len(latencies)
        assert set(dict(statuses)) <= {"sent", "queued"}
    finally:
        app.close()
