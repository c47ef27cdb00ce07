"""The send path's statements against the size of the ledger around them.

    .venv/bin/python bench/bench_ledger_size.py [--size 1000000]
        [--backend sqlite|postgresql|both] [--postgres-url URL]

The same operations on the same rows, first in a ledger holding nothing else (the ceiling:
the work itself), then after ``--size`` other emails were added (half sent three days ago,
half queued for tomorrow: a shop's history and a campaign waiting to go), with the time of
each and the ratio big / small (the goal: about 1, the work does not grow with the ledger).
Each operation runs ``REPEAT`` times in a transaction that is rolled back; the median is
shown:

- **claim**: ``claim_batch`` of 1,000 due rows with the cap rules (``attention_for``);
- **chunk**: a chunk's writes on 100 of them (``skip_withdrawn``, ``mark_sending`` with
  their nonces, ``record_results``), after the claim, in its transaction (only the chunk
  is timed);
- **unsubscribe**: ``record_withdrawals`` of one subscriber with one queued email;
- **exit**: ``exit_sequence`` of one enrollment with one queued step;
- **events**: SendGrid ``delivered`` events settling 100 of the queued rows
  (``events.store.reconcile``, what the event webhook's drain does).

PostgreSQL's tables are vacuumed and analysed after each load, as autovacuum would have.
The database named by ``--postgres-url`` is wiped (schema ``public`` dropped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.automation.enrolling import enroll, exit_sequence
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.events.parsing import ParsedEvent
from newsletter.events.store import reconcile
from newsletter.ledger import claim_batch, mark_sending, record_results, skip_withdrawn
from newsletter.models import Delivery, Enrollment, Subscriber, SubscriberStatus
from newsletter.withdrawals import Withdrawal, record_withdrawals

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_dispatch import NOW, populate
from bench.bench_planning import settings_for
from bench.common import add_backend_options, backend_urls, fresh_engine

REPEAT = 15
BATCH = 1000
CHUNK = 100
LEASE = timedelta(minutes=5)
SEQUENCE = "back-pain-basics"


def timed(app: App, work: Callable[[Session], object]) -> float:
    """Median seconds of ``work`` (its own figure if it returns one), rolled back."""
    times = []
    for _ in range(REPEAT):
        session = app.sessions()
        try:
            started = time.perf_counter()
            spent = work(session)
            times.append(spent if isinstance(spent, float) else time.perf_counter() - started)
        finally:
            session.rollback()
            session.close()
    return statistics.median(times)


def claim(app: App) -> Callable[[Session], object]:
    attention = attention_for(app)

    def work(session: Session) -> None:
        rows = claim_batch(
            session, worker="w", limit=BATCH, now=NOW, lease=LEASE, attention=attention
        )
        assert len(rows) == BATCH, len(rows)

    return work


def chunk(app: App) -> Callable[[Session], object]:
    attention = attention_for(app)

    def work(session: Session) -> float:
        rows = claim_batch(
            session, worker="w", limit=BATCH, now=NOW, lease=LEASE, attention=attention
        )
        ids = sorted(r.id for r in rows)[:CHUNK]
        started = time.perf_counter()
        assert skip_withdrawn(session, ids, now=NOW) == []
        nonces = {i: f"{i:016x}" for i in ids}  # as dispatch marks them (PostgreSQL: one UPDATE)
        assert mark_sending(session, ids, now=NOW, worker="w", lease=LEASE, nonces=nonces) == ids
        record_results(
            session,
            [SendResult(i, SendStatus.SENT, provider_message_id="m") for i in ids],
            now=NOW,
            max_attempts=3,
        )
        return time.perf_counter() - started

    return work


def unsubscribe(leaver: int) -> Callable[[Session], object]:
    def work(session: Session) -> None:
        record_withdrawals(
            session, [Withdrawal(leaver, SubscriberStatus.UNSUBSCRIBED, "bench")], now=NOW
        )

    return work


def leave(member: int) -> Callable[[Session], object]:
    def work(session: Session) -> None:
        assert exit_sequence(session, member, SEQUENCE, now=NOW)

    return work


def settle(ids: list[int]) -> Callable[[Session], object]:
    events = [
        ParsedEvent(
            event="delivered",
            occurred_at=NOW,
            logical_key=f"delivered:{i}",
            email=None,
            email_hash=None,
            sg_event_id=f"bench-{i}",
            sg_message_id="bench.filter",
            delivery_id=i,
            bounce_type=None,
            reason=None,
            payload={},
        )
        for i in ids
    ]

    def work(session: Session) -> None:
        assert reconcile(session, events, now=NOW) == len(ids)

    return work


def subscriber_of(engine: Engine, prefix: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(Subscriber.id).where(Subscriber.public_id == f"{prefix}-p1")
            ).scalar_one()
        )


def analyse(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def grow(engine: Engine, size: int) -> None:
    """``size`` other emails: half sent three days ago, half queued for tomorrow."""
    sent = size // 2
    populate(engine, sent, "tips/meet-your-ql", prefix="old", key="old", due=NOW - timedelta(3))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE deliveries SET status = 'sent', attempts = 1, sent_at = due_at, "
                "updated_at = due_at WHERE key LIKE 'old:%'"
            )
        )
    populate(engine, size - sent, "tips/meet-your-ql", prefix="later", key="later",
             due=NOW + timedelta(days=1))  # fmt: skip
    analyse(engine)


def run(url: str, size: int, tmp: str) -> dict[str, tuple[float, float]]:
    engine = fresh_engine(url)
    populate(engine, BATCH, "tips/meet-your-ql")
    populate(engine, 1, "tips/meet-your-ql", prefix="leaver", key="leaver")
    populate(engine, 1, "tips/meet-your-ql", prefix="member", key="member")
    app = App(settings_for(url, tmp))
    leaver, member = subscriber_of(engine, "leaver"), subscriber_of(engine, "member")
    with transaction(app.sessions) as session:  # the member's queued step is a drip row
        enroll(session, member, app.library.sequence(SEQUENCE), now=NOW)
        enrollment = session.scalars(
            select(Enrollment.id).where(Enrollment.subscriber_id == member)
        ).one()
        session.execute(
            insert(Delivery).values(
                key=f"drip:{enrollment}:tips/meet-your-ql",
                kind="drip",
                subscriber_id=member,
                enrollment_id=enrollment,
                item_id="tips/meet-your-ql",
                status="queued",
                attempts=0,
                due_at=NOW + timedelta(days=1),
                created_at=NOW,
                updated_at=NOW,
            )
        )
    analyse(engine)
    with engine.connect() as conn:
        queued = conn.execute(
            select(Delivery.id).where(Delivery.key.like("bench:%")).order_by(Delivery.id)
        ).scalars()
        event_ids = list(queued)[:CHUNK]
    operations = {
        "claim": claim(app),
        "chunk": chunk(app),
        "unsubscribe": unsubscribe(leaver),
        "exit": leave(member),
        "events": settle(event_ids),
    }
    small = {name: timed(app, work) for name, work in operations.items()}
    grow(engine, size)
    big = {name: timed(app, work) for name, work in operations.items()}
    app.close()
    engine.dispose()
    return {name: (small[name], big[name]) for name in operations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    add_backend_options(parser)
    parser.add_argument("--size", type=int, default=1_000_000, help="other emails added")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for url in backend_urls(args, tmp):
            results = run(url, args.size, tmp)
            backend = "postgresql" if url.startswith("postgresql") else "sqlite"
            for name, (small, big) in results.items():
                print(
                    f"{backend:>10} {name:>11}: {small * 1000:8.2f} ms alone, "
                    f"{big * 1000:8.2f} ms with {args.size:,} other emails; "
                    f"ratio {big / small:.2f} (goal about 1)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
