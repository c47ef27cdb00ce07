"""The SEND_RATE token bucket shared through the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import make_engine, session_factory, upgrade
from newsletter.delivery.rate import STATE_KEY, SendRateLimiter
from newsletter.models import ServiceState

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """The shared database fixture: SQLite, and PostgreSQL when configured."""
    engine = make_engine(db_url)
    upgrade(engine)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        session.execute(delete(ServiceState).where(ServiceState.key == STATE_KEY))
    yield factory
    engine.dispose()


def test_zero_rate_never_waits_and_writes_nothing(sessions: sessionmaker[Session]) -> None:
    limiter = SendRateLimiter(sessions, 0)
    assert limiter.acquire(1_000_000, now=T0) == 0.0
    with sessions() as session:
        assert session.get(ServiceState, STATE_KEY) is None


@pytest.mark.parametrize(
    ("steps", "expected_waits"),
    [
        pytest.param([(10, 0.0)], [0.0], id="a-full-bucket-sends-one-second-at-once"),
        pytest.param([(10, 0.0), (5, 0.0), (5, 0.0)], [0.0, 0.5, 1.0], id="reservations-queue"),
        pytest.param([(10, 0.0), (10, 1.0)], [0.0, 0.0], id="refills-at-the-rate"),
        pytest.param([(10, 0.0), (1, 0.5)], [0.0, 0.0], id="half-refilled"),
        pytest.param([(10, 0.0), (6, 0.5)], [0.0, 0.1], id="partly-refilled"),
        pytest.param([(1, 0.0), (1, 60.0), (15, 60.0)], [0.0, 0.0, 0.6], id="never-above-burst"),
        pytest.param([(25, 0.0)], [1.5], id="more-than-a-burst-at-once"),
        pytest.param([(10, 5.0), (5, 4.0)], [0.0, 0.5], id="a-clock-behind-does-not-refill"),
    ],
)
def test_token_bucket_table(
    sessions: sessionmaker[Session],
    steps: list[tuple[int, float]],
    expected_waits: list[float],
) -> None:
    """Rate 10/s, burst 10: the wait for each (messages, seconds after T0) step."""
    limiter = SendRateLimiter(sessions, 10)
    waits = [limiter.acquire(n, now=T0 + timedelta(seconds=at)) for n, at in steps]
    assert waits == pytest.approx(expected_waits)


def test_workers_share_one_bucket(sessions: sessionmaker[Session]) -> None:
    """Two limiters (two workers) draw from the same row."""
    first, second = SendRateLimiter(sessions, 4), SendRateLimiter(sessions, 4)
    assert first.acquire(4, now=T0) == 0.0
    assert second.acquire(2, now=T0) == pytest.approx(0.5)
    assert first.acquire(2, now=T0) == pytest.approx(1.0)
    with sessions() as session:
        row = session.execute(
            select(ServiceState).where(ServiceState.key == STATE_KEY)
        ).scalar_one()
        assert row.number == pytest.approx(-4.0)
        assert row.updated_at == T0


def test_concurrent_acquires_lose_no_reservation(sessions: sessionmaker[Session]) -> None:
    """16 threads at the same instant get 16 distinct slots: the row update is serialised."""
    limiter = SendRateLimiter(sessions, 8)
    waits: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        wait = limiter.acquire(1, now=T0)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(waits) == pytest.approx([0.0] * 8 + [i / 8 for i in range(1, 9)])


def test_callers_that_sleep_their_wait_stay_under_the_cap(
    sessions: sessionmaker[Session],
) -> None:
    """Simulated time: batches of 7 sent after each wait never exceed rate*t + burst."""
    rate = 20.0
    limiter = SendRateLimiter(sessions, rate)
    now, sent = T0, 0
    for _ in range(30):
        now += timedelta(seconds=limiter.acquire(7, now=now))
        sent += 7
        elapsed = (now - T0).total_seconds()
        assert sent <= rate * elapsed + limiter.burst + 1e-9
    assert (now - T0).total_seconds() == pytest.approx((30 * 7 - rate) / rate)


@pytest.mark.parametrize(
    ("rate", "n", "now", "problem"),
    [
        pytest.param(-1.0, 1, T0, "NEWSLETTER_SEND_RATE", id="negative-rate"),
        pytest.param(5.0, -1, T0, "negative", id="negative-count"),
        pytest.param(5.0, 1, datetime(2025, 3, 1, 9, 0), "naive", id="naive-now"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, rate: float, n: int, now: datetime, problem: str
) -> None:
    factory = session_factory(make_engine(f"sqlite:///{tmp_path}/nl.db"))
    with pytest.raises(ValueError, match=problem):
        SendRateLimiter(factory, rate).acquire(n, now=now)
