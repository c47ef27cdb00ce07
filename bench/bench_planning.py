"""Drip planning of N due enrollments against its ceiling, one bare ``INSERT ... SELECT``.

    .venv/bin/python bench/bench_planning.py [--backend sqlite|postgresql|both]
        [--size 1000000] [--postgres-url postgresql+psycopg://...]

For each backend it builds ``--size`` active subscribers, each in ``back-pain-basics`` with
its first two items sent (two ``sent`` ledger rows each: what the planner must look up to
skip what a subscriber already had) and its third step due now, with bulk SQL (no ORM).
Then, on that same database in the same run:

1. **ceiling**: one ``INSERT INTO deliveries ... SELECT ... FROM enrollments`` writing the
   very rows the planner will write (same key, item, step, status, columns), timed, then
   rolled back (PostgreSQL: ``VACUUM`` afterwards so the planner starts on a clean heap);
2. **project**: one ``plan_drips`` pass (decides, writes the ledger rows and moves every
   enrollment forward), timed; the ledger is then checked against what the ceiling wrote;
3. a second pass with nothing due (the cost of looking at a list of ``--size``).

It prints project, ceiling and ratio (project / ceiling; the goal is <= 1.5), and the CPU
each spent per row planned: this process's on SQLite (the database runs in it); on
PostgreSQL the client backends' (``/proc/<pid>/stat`` of the connections to the bench
database, so the server must run on this machine; autovacuum is left out) plus this
process's. CPU is the steadier
figure on a shared machine.
The PostgreSQL database named by ``--postgres-url`` is wiped (schema ``public`` dropped).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from newsletter.app import App
from newsletter.drip.planner import Catalog, drip_key, plan_drips
from newsletter.drip.planning import choose_next
from newsletter.settings import load_settings

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import add_backend_options, backend_urls, fresh_engine, insert_readers

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)  # 09:30 in Berlin: inside 08:00-11:00
SEQUENCE = "back-pain-basics"
HAD = (("system/welcome", 0), ("tips/meet-your-ql", 1))


def numbers_sql(postgres: bool) -> str:
    if postgres:
        return "SELECT n FROM generate_series(1, :size) AS n"
    return (
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :size) "
        "SELECT n FROM s"
    )


def populate(engine: Engine, size: int) -> None:
    """Subscribers and enrollments 1..size, all due now, each with two items sent."""
    postgres = engine.dialect.name == "postgresql"
    numbers = numbers_sql(postgres)
    before = NOW - timedelta(hours=1)
    with engine.begin() as conn:
        insert_readers(conn, numbers, size, before)
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "  # noqa: S608 - constant SQL
                "last_item_id, next_due_at, last_sent_at, created_at) "
                "SELECT n, n, :sequence, 'active', 2, 'tips/meet-your-ql', :before, "
                f":before, :before FROM ({numbers}) AS numbers"
            ),
            {"size": size, "before": before, "sequence": SEQUENCE},
        )
        for item, step in HAD:
            conn.execute(
                text(
                    "INSERT INTO deliveries (key, kind, subscriber_id, item_id, enrollment_id, "
                    "step, status, attempts, due_at, created_at, sent_at, updated_at) "
                    "SELECT 'drip:' || id || :suffix, 'drip', id, :item, id, :step, "
                    "'sent', 1, :before, :before, :before, :before FROM enrollments"
                ),
                {"before": before, "suffix": f":{item}", "item": item, "step": step},
            )
        if postgres:
            conn.execute(text("SELECT setval('subscribers_id_seq', :size)"), {"size": size})
            conn.execute(text("SELECT setval('enrollments_id_seq', :size)"), {"size": size})
            conn.execute(
                text("SELECT setval('deliveries_id_seq', (SELECT max(id) FROM deliveries))")
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def expected_item(app: App) -> tuple[str, int]:
    """The item and step the planner must write for every enrollment (planning.py says)."""
    sequence = Catalog.from_app(app).sequences[SEQUENCE]
    nxt = choose_next(
        sequence,
        last_item_id="tips/meet-your-ql",
        position=2,
        had={item for item, _ in HAD},
        pool={},
    )
    assert nxt is not None
    return nxt.item_id, nxt.step


CEILING_SQL = (
    "INSERT INTO deliveries (key, kind, subscriber_id, item_id, enrollment_id, step, status, "
    "attempts, due_at, created_at, updated_at) "
    "SELECT 'drip:' || e.id || ':' || :item, 'drip', e.subscriber_id, :item, e.id, :step, "
    "'queued', 0, :now, :now, :now FROM enrollments AS e "
    "WHERE e.status = 'active' AND e.next_due_at <= :now"
)


def ceiling(engine: Engine, item: str, step: int) -> tuple[float, float, int]:
    """Time one bare INSERT ... SELECT of the same ledger rows (wall and CPU seconds);
    rolled back afterwards."""
    with engine.connect() as conn:
        transaction = conn.begin()
        cpu = CpuMeter(engine)
        started = time.perf_counter()
        result = conn.execute(text(CEILING_SQL), {"item": item, "step": step, "now": NOW})
        elapsed = time.perf_counter() - started
        cpu_s = cpu.spent()
        transaction.rollback()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE deliveries"))
    return elapsed, cpu_s, int(result.rowcount)


class CpuMeter:
    """CPU seconds spent since it was made: this process's, plus on PostgreSQL that of
    every server backend connected to the bench database (read from ``/proc``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.process = time.process_time()
        self.backends = self._backends()

    def _backends(self) -> dict[int, float]:
        if self.engine.dialect.name != "postgresql":
            return {}
        with self.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend'"
                )
            ).scalars()
            return {pid: backend_cpu(pid) for pid in pids}

    def spent(self) -> float:
        now = self._backends()
        server = sum(cpu - self.backends.get(pid, 0.0) for pid, cpu in now.items())
        return time.process_time() - self.process + server


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_ledger(engine: Engine, size: int, item: str, step: int) -> None:
    """The planner wrote exactly the ceiling's rows (one queued row per enrollment)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT count(*), min(enrollment_id), max(enrollment_id), "
                "count(DISTINCT enrollment_id) FROM deliveries "
                "WHERE item_id = :item AND step = :step AND status = 'queued' AND kind = 'drip'"
            ),
            {"item": item, "step": step},
        ).one()
        assert tuple(rows) == (size, 1, size, size), rows
        bad_key = conn.execute(
            text(
                "SELECT count(*) FROM deliveries WHERE item_id = :item "
                "AND key != 'drip:' || enrollment_id || ':' || :item"
            ),
            {"item": item},
        ).scalar_one()
        assert bad_key == 0
        moved = conn.execute(
            text(
                "SELECT count(*) FROM enrollments WHERE last_item_id = :item "
                "AND position = :position AND next_due_at IS NULL AND status = 'active'"
            ),
            {"item": item, "position": step + 1},
        ).scalar_one()
        assert moved == size, moved


def settings_for(url: str, tmp: str) -> Any:
    return load_settings(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_VAR_DIR": tmp,
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_CONTENT_DIR": str(ROOT / "content"),
            "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates" / "emails"),
            "NEWSLETTER_POSTAL_ADDRESS": "1 Bench Street, Berlin",
            "NEWSLETTER_DEFAULT_TIMEZONE": "Europe/Berlin",
        }
    )


def run(url: str, size: int) -> dict[str, Any]:
    engine = fresh_engine(url)
    started = time.perf_counter()
    populate(engine, size)
    populate_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        app = App(settings_for(url, tmp))
        item, step = expected_item(app)
        ceiling_s, ceiling_cpu, ceiling_rows = ceiling(engine, item, step)
        assert ceiling_rows == size, ceiling_rows
        cpu = CpuMeter(engine)
        started = time.perf_counter()
        first = plan_drips(app, NOW)
        plan_s = time.perf_counter() - started
        plan_cpu = cpu.spent()  # before app.close(): its pooled backends are still there
        check_ledger(engine, size, item, step)
        assert drip_key(1, item) == f"drip:1:{item}"
        started = time.perf_counter()
        idle = plan_drips(app, NOW)
        idle_s = time.perf_counter() - started
        app.close()
    engine.dispose()
    return {
        "backend": engine.dialect.name,
        "size": size,
        "populate_s": populate_s,
        "planned": first["planned"],
        "batches": first["batches"],
        "plan_s": plan_s,
        "ceiling_s": ceiling_s,
        "plan_cpu_us": plan_cpu / size * 1e6,
        "ceiling_cpu_us": ceiling_cpu / size * 1e6,
        "idle_ms": idle_s * 1000,
        "idle_planned": idle["planned"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    add_backend_options(parser)
    parser.add_argument("--size", type=int, default=1_000_000, help="due enrollments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for url in backend_urls(args, tmp):
            r = run(url, args.size)
            print(
                f"{r['backend']:>10}: plan {r['size']:,} due enrollments (built in "
                f"{r['populate_s']:.1f} s): project {r['plan_s']:.2f} s "
                f"({r['planned']:,} planned, {r['batches']} batches, "
                f"{r['planned'] / r['plan_s']:,.0f} rows/s); ceiling INSERT ... SELECT "
                f"{r['ceiling_s']:.2f} s; ratio {r['plan_s'] / r['ceiling_s']:.2f}x "
                f"(goal <= 1.5x); CPU per row: project {r['plan_cpu_us']:.1f} us, ceiling "
                f"{r['ceiling_cpu_us']:.1f} us, ratio "
                f"{r['plan_cpu_us'] / r['ceiling_cpu_us']:.2f}x; "
                f"next pass, nothing due: {r['idle_ms']:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
