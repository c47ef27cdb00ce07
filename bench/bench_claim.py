"""Time per 500-row claim (``ledger.claim_batch``) with a large queue, against a bare claim.

    .venv/bin/python bench/bench_claim.py [--backend sqlite|postgresql|both]
        [--queued 900000] [--claims 10] [--limit 500] [--postgres-url ...]

Builds ``--queued`` queued drip deliveries (one per active subscriber, due over the past
day in id order, so the order ``due_at, id`` is not the physical order), then claims
``--claims`` batches of ``--limit`` rows with ``claim_batch`` (each committed, as delivery
does), with and without the attention hook. The ceiling is the bare statement pair a claim
needs: ``SELECT id ... ORDER BY due_at, id LIMIT n [FOR UPDATE SKIP LOCKED]`` + one
``UPDATE`` to ``leased``, same database, same run. Prints median ms per claim and the ratio.
The PostgreSQL database named by ``--postgres-url`` is wiped (schema ``public`` dropped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.db import transaction
from newsletter.ledger import claim_batch

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_planning import numbers_sql, settings_for
from bench.common import add_backend_options, backend_urls, fresh_engine, insert_readers

NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def populate(engine: Engine, size: int) -> None:
    postgres = engine.dialect.name == "postgresql"
    numbers = numbers_sql(postgres)
    start = NOW - timedelta(days=1)
    # due_at runs backwards in id order within 1,000 buckets: index order != heap order
    due = (
        "(:start + (((:size - n) % 1000) * interval '1 second'))"
        if postgres
        else "strftime('%Y-%m-%d %H:%M:%f', :start, '+' || ((:size - n) % 1000) || ' seconds')"
    )
    with engine.begin() as conn:
        insert_readers(conn, numbers, size, start)
        conn.execute(
            text(
                "INSERT INTO deliveries (key, kind, subscriber_id, item_id, step, status, "  # noqa: S608 - constant SQL
                "attempts, due_at, created_at, updated_at) "
                f"SELECT 'drip:x:' || n, 'drip', n, 'tips/gentle-pressure', 2, 'queued', 0, "
                f"{due}, :start, :start FROM ({numbers}) AS numbers"
            ),
            {"size": size, "start": start},
        )
        if postgres:
            conn.execute(text("SELECT setval('subscribers_id_seq', :size)"), {"size": size})
            conn.execute(
                text("SELECT setval('deliveries_id_seq', (SELECT max(id) FROM deliveries))")
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def bare_claim(engine: Engine, limit: int) -> float:
    lock = " FOR UPDATE SKIP LOCKED" if engine.dialect.name == "postgresql" else ""
    started = time.perf_counter()
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                "SELECT id FROM deliveries WHERE status = 'queued' AND due_at <= :now "  # noqa: S608 - constant SQL
                f"ORDER BY due_at, id LIMIT :limit{lock}"
            ),
            {"now": NOW, "limit": limit},
        ).scalars()
        conn.execute(
            text("UPDATE deliveries SET status = 'leased', leased_by = 'bare' WHERE id = :id"),
            [{"id": i} for i in ids],
        )
    return time.perf_counter() - started


def project_claim(app: App, limit: int, *, attention: bool) -> float:
    hook = attention_for(app) if attention else None
    started = time.perf_counter()
    with transaction(app.sessions) as session:
        rows = claim_batch(
            session,
            worker="bench",
            limit=limit,
            now=NOW,
            lease=timedelta(minutes=5),
            attention=hook,
        )
        assert len(rows) == limit, len(rows)
    return time.perf_counter() - started


def explain(app: App, limit: int) -> str:
    """EXPLAIN (ANALYZE on PostgreSQL) of the due query ``claim_batch`` really sends."""
    engine = app.engine
    captured: list[tuple[str, Any]] = []

    def grab(_c: Any, _k: Any, statement: str, parameters: Any, _x: Any, _m: bool) -> None:
        if "ORDER BY deliveries.due_at" in statement and not captured:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    with app.sessions() as session:
        claim_batch(session, worker="x", limit=limit, now=NOW, lease=timedelta(minutes=5))
        session.rollback()
    event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = captured[0]
    if engine.dialect.name == "postgresql":
        query = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    else:
        query = "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(query + statement, parameters).all()
        conn.rollback()
    return "\n".join("    " + " | ".join(str(c) for c in r) for r in rows)


def run(url: str, queued: int, claims: int, limit: int) -> dict[str, Any]:
    engine = fresh_engine(url)
    populate(engine, queued)
    with tempfile.TemporaryDirectory() as tmp:
        app = App(settings_for(url, tmp))
        plan = explain(app, limit)
        bare = [bare_claim(engine, limit) for _ in range(claims)]
        plain = [project_claim(app, limit, attention=False) for _ in range(claims)]
        hooked = [project_claim(app, limit, attention=True) for _ in range(claims)]
        app.close()
    engine.dispose()
    return {
        "backend": engine.dialect.name,
        "queued": queued,
        "bare_ms": statistics.median(bare) * 1000,
        "claim_ms": statistics.median(plain) * 1000,
        "attention_ms": statistics.median(hooked) * 1000,
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    add_backend_options(parser)
    parser.add_argument("--queued", type=int, default=900_000)
    parser.add_argument("--claims", type=int, default=10)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for url in backend_urls(args, tmp):
            r = run(url, args.queued, args.claims, args.limit)
            print(
                f"{r['backend']:>10}: {r['queued']:,} queued, median per {args.limit}-row "
                f"claim: claim_batch {r['claim_ms']:.1f} ms, with attention "
                f"{r['attention_ms']:.1f} ms; ceiling (bare SELECT ... LIMIT + UPDATE) "
                f"{r['bare_ms']:.1f} ms; ratio {r['claim_ms'] / r['bare_ms']:.2f}x\n"
                f"            plan of claim_batch's due query:\n{r['plan']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
