"""A campaign burst against a full cap: every claimed email is moved, none sent.

    .venv/bin/python bench/bench_deferrals.py [--count 20000] [--database-url URL]

``--count`` subscribers each got an email an hour ago and have another queued, due now;
the cap (``1/24h``, the default) is full for all of them, so ``deliver_due`` moves every
one to its next slot: a ``due_at`` later, the reason in ``error`` and a row in
``delivery_deferrals``, all in the claim's write transaction (SQLite's one writer). That
is what a campaign sent on a day most readers already had a drip step looks like.

The ceiling, on the same rows in the same run (rolled back): the two bare statements that
make the same changes to all of them at once (``UPDATE deliveries ... WHERE key LIKE``,
``INSERT INTO delivery_deferrals SELECT ...``). Prints rows moved per second for both and
the ratio. A PostgreSQL database named by ``--database-url`` is wiped (schema ``public``
dropped).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, bindparam, func, select, text

from newsletter.app import App
from newsletter.dispatch import deliver_due
from newsletter.models import Delivery, DeliveryDeferral, UTCDateTime

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_dispatch import NOW, populate
from bench.bench_planning import settings_for
from bench.common import fresh_engine

UNTIL = NOW + timedelta(hours=23)


def load(engine: Engine, count: int) -> None:
    """Each subscriber: one email sent an hour ago, one queued and due now."""
    populate(engine, count, "tips/meet-your-ql", key="sent", due=NOW - timedelta(hours=1))
    stamp = bindparam("now", type_=UTCDateTime())
    with engine.begin() as conn:
        conn.execute(text("UPDATE deliveries SET status = 'sent', attempts = 1, sent_at = due_at"))
        conn.execute(
            text(
                "INSERT INTO deliveries (key, kind, subscriber_id, item_id, status, attempts, "
                "due_at, created_at, updated_at) SELECT 'bench:' || subscriber_id, 'drip', "
                "subscriber_id, 'tips/walking', 'queued', 0, :now, :now, :now FROM deliveries "
                "WHERE key LIKE 'sent:%'"
            ).bindparams(stamp),
            {"now": NOW},
        )


def ceiling(engine: Engine) -> float:
    """Seconds for the bare statements moving every queued row (rolled back)."""
    until = bindparam("until", type_=UTCDateTime())
    with engine.connect() as conn:
        transaction = conn.begin()
        started = time.perf_counter()
        conn.execute(
            text(
                "UPDATE deliveries SET due_at = :until, deferred_from = due_at, "
                "error = 'deferred: marketing cap 1/1d reached', updated_at = :until "
                "WHERE key LIKE 'bench:%'"
            ).bindparams(until),
            {"until": UNTIL},
        )
        conn.execute(
            text(
                "INSERT INTO delivery_deferrals (delivery_id, subscriber_id, at, until, reason) "
                "SELECT id, subscriber_id, :until, :until, 'marketing cap 1/1d reached' "
                "FROM deliveries WHERE key LIKE 'bench:%'"
            ).bindparams(until),
            {"until": UNTIL},
        )
        seconds = time.perf_counter() - started
        transaction.rollback()
    return seconds


def project(app: App) -> float:
    """Seconds for ``deliver_due`` until nothing is due (every row moved)."""
    started = time.perf_counter()
    while True:
        deliver_due(app, now=NOW, limit=1000)
        with app.sessions() as session:
            due = session.scalar(
                select(func.count()).where(Delivery.status == "queued", Delivery.due_at <= NOW)
            )
        if not due:
            return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        engine = fresh_engine(url)
        load(engine, args.count)
        bare = ceiling(engine)
        app = App(settings_for(url, tmp))
        app.library  # noqa: B018 - load the content outside the timing
        seconds = project(app)
        with app.sessions() as session:
            moved = session.scalar(select(func.count()).select_from(DeliveryDeferral))
            sent = session.scalar(
                select(func.count()).where(
                    Delivery.key.like("bench:%"), Delivery.status != "queued"
                )
            )
        app.close()
        engine.dispose()
    assert moved == args.count, moved  # every row moved once
    assert sent == 0, sent  # and none sent
    print(
        f"{engine.dialect.name}: {args.count:,} emails moved by the cap: project "
        f"{seconds:.2f} s ({args.count / seconds:,.0f} rows/s, "
        f"{seconds / args.count * 1e6:.0f} us per row); ceiling (two bare statements) "
        f"{bare:.2f} s ({args.count / bare:,.0f} rows/s); ratio {bare / seconds:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
