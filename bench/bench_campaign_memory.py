"""Memory stays flat while a campaign's audience is frozen into the ledger.

    .venv/bin/python bench/bench_campaign_memory.py [--small 20000] [--large 200000]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/nl_campaign]

For each size, a fresh database gets that many subscribers (one set-based INSERT), a warm-up
campaign with the same SQL shape (another tag, 30 % of the list) compiles and caches every
statement,
then ``freeze_audience`` runs for the measured campaign under ``tracemalloc``. Each size
runs in its own process; prints the peak Python allocation, the process's peak RSS and the
time for each size (flat: the same peaks for both sizes).
Without ``--database-url`` each size gets a SQLite file in a temporary folder; with it the
database is wiped (``DROP SCHEMA public CASCADE``) before each size.
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, text

from newsletter.app import App
from newsletter.campaigns.planner import freeze_audience
from newsletter.db import transaction
from newsletter.models import Campaign, CampaignState, UTCDateTime
from newsletter.settings import load_settings

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import fresh_engine

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")


def tags_of(n: int) -> list[str]:
    """The tags ``insert_subscribers`` gives subscriber number ``n`` (1-based)."""
    if n % 10 == 0:
        return ["vip", "back"]
    if n % 10 in (1, 2, 3):
        return ["desk"]
    return ["back"]


def zone_of(n: int) -> str:
    return ZONES[n % len(ZONES)]


def insert_subscribers(
    engine: Engine, count: int, *, first: int = 1, status: str = "active", now: datetime = NOW
) -> None:
    """Insert subscribers ``first .. first+count-1`` in one statement (recursive CTE), with
    ``tags_of(n)`` and ``zone_of(n)``; emails are ``reader<n>@example.org``."""
    json_type = "::json" if engine.dialect.name == "postgresql" else ""
    zones = " ".join(f"WHEN {i} THEN '{z}'" for i, z in enumerate(ZONES))
    sql = f"""
        WITH RECURSIVE seq(n) AS (
            SELECT CAST(:first AS INTEGER) UNION ALL SELECT n + 1 FROM seq WHERE n < :last
        )
        INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
            attributes, created_at, updated_at, confirmed_at, soft_bounces)
        SELECT 'p' || n, 'reader' || n || '@example.org', 'Reader', CASE n % {len(ZONES)}
            {zones} END, :status,
            (CASE WHEN n % 10 = 0 THEN '["vip", "back"]'
                  WHEN n % 10 IN (1, 2, 3) THEN '["desk"]'
                  ELSE '["back"]' END){json_type},
            '{{}}'{json_type}, :now, :now, :now, 0
        FROM seq
    """  # noqa: S608 - only module constants are formatted in; every value is bound
    statement = text(sql).bindparams(bindparam("now", type_=UTCDateTime()))
    with engine.begin() as conn:
        conn.execute(
            statement, {"first": first, "last": first + count - 1, "status": status, "now": now}
        )


@dataclass(frozen=True)
class Measurement:
    subscribers: int
    rows: int
    peak_bytes: int
    seconds: float


def add_campaign(app: App, name: str, include: list[str], exclude: list[str]) -> int:
    """A started campaign (state ``sending``) whose audience is not frozen yet."""
    with transaction(app.sessions) as session:
        campaign = Campaign(
            name=name,
            item_id="campaigns/seven-day-reset",
            state=CampaignState.SENDING.value,
            include_tags=include,
            exclude_tags=exclude,
            pause_drips=False,
            scheduled_at=NOW,
            timezone="UTC",
            audience_cursor=0,
            audience_frozen=False,
            audience_count=0,
            created_at=NOW,
            updated_at=NOW,
            started_at=NOW,
        )
        session.add(campaign)
        session.flush()
        return campaign.id


def measure(url: str, count: int, var_dir: Path) -> Measurement:
    """Peak traced memory of ``freeze_audience`` over ``count`` subscribers at ``url``."""
    engine = fresh_engine(url)
    insert_subscribers(engine, count)
    engine.dispose()
    settings = load_settings(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_VAR_DIR": str(var_dir),
            "NEWSLETTER_SECRET_KEY": "bench",
        }
    )
    app = App(settings)
    try:
        warm = add_campaign(app, "warm-up", ["desk"], ["vip"])
        freeze_audience(app, warm, now=NOW)
        measured = add_campaign(app, "measured", ["back"], ["vip"])
        gc.collect()
        tracemalloc.start()
        started = time.perf_counter()
        rows = freeze_audience(app, measured, now=NOW)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        app.close()
    return Measurement(count, rows, peak, seconds)


def _peak_rss_kib() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--only", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:  # one size in this process: its peak RSS is that size's alone
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / f'bench-{args.only}.db'}"
            baseline = _peak_rss_kib()
            result = measure(url, args.only, Path(tmp) / "var")
            print(
                f"{result.subscribers:>9,} subscribers: {result.rows:>9,} rows frozen, "
                f"peak traced {result.peak_bytes / 1024:,.0f} KiB, peak RSS "
                f"{_peak_rss_kib() / 1024:,.1f} MiB (after imports {baseline / 1024:,.1f} MiB), "
                f"{result.seconds:.2f} s ({result.rows / max(result.seconds, 1e-9):,.0f} rows/s)",
                flush=True,
            )
        return
    for count in (args.small, args.large):
        command = [sys.executable, __file__, "--only", str(count)]
        if args.database_url:
            command += ["--database-url", args.database_url]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
