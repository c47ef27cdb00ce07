"""Drip lag past due with the scheduler running, against its poll interval.

    .venv/bin/python bench/bench_drip_lag.py [--backend sqlite|postgresql|both]
        [--poll 2] [--steps 200] [--spread 10] [--postgres-url ...]

Runs the in-process scheduler that ``serve`` and ``worker`` use (``build_scheduler``: the
jobs of ``cron.yaml`` with their coalesce / one-instance / run-late policy), with every job
that ``cron.yaml`` runs each minute polled every ``--poll`` seconds instead (all starting at
the same instant, as cron fires them in the same second). ``--steps`` subscribers each
have their first drip step (the welcome, which ignores the send window) due at a random
instant spread over ``--spread`` poll intervals. A recording mailer notes the wall-clock
time each email is handed over; lag = handed-over time - the step's due time. It prints
p50 / p99 / max lag, each as a multiple of the poll interval (goal: p99 <= 1 interval),
and how many steps never went out. The ceiling is the poll interval itself.
The PostgreSQL database named by ``--postgres-url`` is wiped (schema ``public`` dropped).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text

from newsletter.app import App
from newsletter.cronfile import load_cron_file
from newsletter.scheduling import build_scheduler

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_planning import settings_for
from bench.common import add_backend_options, backend_urls, fresh_engine
from tests.mailers import HandOverClock

SEQUENCE = "back-pain-basics"


def populate(
    engine: Engine, steps: int, start: datetime, spread: float, seed: int
) -> dict[int, datetime]:
    """Subscribers 1..steps, enrolled, first step due at a random instant after start."""
    rng = random.Random(seed)
    due = {n: start + timedelta(seconds=rng.uniform(0, spread)) for n in range(1, steps + 1)}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, first_name, timezone, status, "
                "tags, attributes, created_at, updated_at, soft_bounces) VALUES (:n, 'p' || :n, "
                "'r' || :n || '@example.org', 'Reader', 'Europe/Berlin', 'active', '[]', '{}', "
                ":at, :at, 0)"
            ),
            [{"n": n, "at": start} for n in due],
        )
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "
                "next_due_at, created_at) VALUES (:n, :n, :sequence, 'active', 0, :due, :at)"
            ),
            [{"n": n, "due": at, "at": start, "sequence": SEQUENCE} for n, at in due.items()],
        )
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('subscribers_id_seq', :n)"), {"n": steps})
            conn.execute(text("SELECT setval('enrollments_id_seq', :n)"), {"n": steps})
    return due


def run(url: str, poll: float, steps: int, spread_intervals: float, seed: int) -> dict[str, Any]:
    spread = spread_intervals * poll
    engine = fresh_engine(url)
    mailer = HandOverClock()
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(url, tmp)
        app = App(settings, mailer=mailer)
        app.library  # noqa: B018 - load content before the clock starts
        scheduler = build_scheduler(app)
        every_minute = {j.name for j in load_cron_file(settings.cron_file) if j.cron == "* * * * *"}
        # Everything is set up: the steps fall due from two intervals on.
        start = datetime.now(UTC) + timedelta(seconds=2 * poll)
        due = populate(engine, steps, start, spread, seed)
        engine.dispose()
        first = datetime.now(UTC) + timedelta(seconds=poll)
        for name in every_minute:
            scheduler.reschedule_job(name, trigger=IntervalTrigger(seconds=poll, start_date=first))
        scheduler.start()
        deadline = time.monotonic() + 2 * poll + spread + 5 * poll + 30
        try:
            while time.monotonic() < deadline:
                with mailer.lock:
                    if len(mailer.sent) >= steps:
                        break
                time.sleep(poll / 10)
        finally:
            scheduler.shutdown(wait=True)
        with app.engine.connect() as conn:
            by_delivery = dict(
                conn.execute(
                    text("SELECT id, enrollment_id FROM deliveries WHERE kind = 'drip'")
                ).all()
            )
        app.close()
    lags = sorted(
        (at - due[by_delivery[delivery_id]]).total_seconds()
        for delivery_id, at in mailer.sent.items()
    )
    missed = steps - len(lags)
    return {
        "backend": "postgresql" if url.startswith("postgresql") else "sqlite",
        "poll": poll,
        "steps": steps,
        "missed": missed,
        "p50": statistics.median(lags) if lags else float("nan"),
        "p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else float("nan"),
        "max": lags[-1] if lags else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    add_backend_options(parser)
    parser.add_argument("--poll", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--spread", type=float, default=10.0, help="in poll intervals")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for url in backend_urls(args, tmp):
            r = run(url, args.poll, args.steps, args.spread, args.seed)
            p = r["poll"]
            print(
                f"{r['backend']:>10}: {r['steps']} steps due over {args.spread:g} intervals, "
                f"poll every {p:g} s: lag p50 {r['p50']:.2f} s ({r['p50'] / p:.2f} intervals), "
                f"p99 {r['p99']:.2f} s ({r['p99'] / p:.2f} intervals), max {r['max']:.2f} s "
                f"({r['max'] / p:.2f}); missed {r['missed']} (goal: p99 <= 1 interval, none "
                "missed)",
                flush=True,
            )


if __name__ == "__main__":
    main()
