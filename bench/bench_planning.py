"""Drip planning cost over a large list, and ledger commits per 1,000 emails.

    .venv/bin/python bench/bench_planning.py [--backend sqlite|postgresql|both]
        [--size 1000000] [--due 0.01] [--postgres-url postgresql+psycopg://...]

For each backend it builds ``--size`` active subscribers, each in ``back-pain-basics``,
with bulk SQL (no ORM): ``--due`` of them are due for their next step now, as many again
have just had their previous item sent (the advance pass must schedule them), the rest
wait for a later date. Then it measures:

1. the first ``plan-drips`` pass: advance + plan the due fraction (time, rows per second);
2. a second pass with nothing due: the cost of looking at a list of ``--size`` rows
   (must not grow with the list: it reads the index on ``(status, next_due_at)``);
3. delivering the planned rows through a null mailer (the dispatcher, rendering included),
   counting ``COMMIT``s with a SQLAlchemy ``commit`` event listener: commits per 1,000
   emails, for the planner and for delivery;
4. the advance pass over the rows just delivered, then a pass with nothing at all to do.

The PostgreSQL database named by ``--postgres-url`` is wiped (schema ``public`` dropped).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from newsletter.app import App
from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.drip.planner import plan_drips
from newsletter.jobs import deliver
from newsletter.settings import load_settings

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import fresh_engine

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)  # 09:30 in Berlin: inside 08:00-11:00
SEQUENCE = "back-pain-basics"


class NullMailer:
    """Accepts everything at once: measures our side only."""

    name = "null"
    max_batch = 100

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        return [
            SendResult(m.delivery_id, SendStatus.SENT, f"null-{m.delivery_id}") for m in messages
        ]

    def close(self) -> None:
        return None


def populate(engine: Engine, size: int, due: int) -> None:
    """Subscribers 1..size. Ids 1..due are due now; due+1..2*due just had step 2 sent;
    the rest are waiting for a date next week."""
    postgres = engine.dialect.name == "postgresql"
    numbers = (
        "SELECT n FROM generate_series(1, :size) AS n"
        if postgres
        else "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :size) "
        "SELECT n FROM s"
    )
    now, later, before = NOW, NOW + timedelta(days=5), NOW - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, public_id, email, first_name, timezone, status, "  # noqa: S608 - constant SQL
                "tags, attributes, created_at, updated_at, soft_bounces) "
                f"SELECT n, 'p' || n, 'r' || n || '@example.org', 'Reader', 'Europe/Berlin', "
                f"'active', '[]', '{{}}', :now, :now, 0 FROM ({numbers}) AS numbers"
            ),
            {"size": size, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, sequence, status, position, "  # noqa: S608 - constant SQL
                "last_item_id, next_due_at, last_sent_at, created_at) "
                "SELECT n, n, :sequence, 'active', 2, 'tips/meet-your-ql', "
                "CASE WHEN n <= :due THEN :before WHEN n <= 2 * :due THEN NULL ELSE :later END, "
                f":before, :before FROM ({numbers}) AS numbers"
            ),
            {"size": size, "due": due, "before": before, "later": later, "sequence": SEQUENCE},
        )
        for item, step in (("system/welcome", 0), ("tips/meet-your-ql", 1)):
            conn.execute(
                text(
                    "INSERT INTO deliveries (key, kind, subscriber_id, item_id, enrollment_id, "
                    "step, status, attempts, due_at, created_at, sent_at, updated_at) "
                    "SELECT 'drip:' || id || :suffix, 'drip', id, :item, id, :step, "
                    "'sent', 1, :before, :before, :before, :before "
                    "FROM enrollments WHERE id <= 2 * :due"
                ),
                {"due": due, "before": before, "suffix": f":{item}", "item": item, "step": step},
            )
        if postgres:
            conn.execute(text("SELECT setval('subscribers_id_seq', :size)"), {"size": size})
            conn.execute(text("SELECT setval('enrollments_id_seq', :size)"), {"size": size})
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


class CommitCounter:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _conn: Any) -> None:
        self.count += 1


def run(url: str, size: int, fraction: float) -> dict[str, Any]:
    engine = fresh_engine(url)
    due = max(1, int(size * fraction))
    started = time.perf_counter()
    populate(engine, size, due)
    populate_s = time.perf_counter() - started
    engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
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
        app = App(settings, mailer=NullMailer())
        app.library  # noqa: B018 - load content before timing
        commits = CommitCounter(app.engine)

        started = time.perf_counter()
        first = plan_drips(app, NOW)
        plan_s = time.perf_counter() - started
        plan_commits = commits.count

        started = time.perf_counter()
        idle = plan_drips(app, NOW)
        idle_s = time.perf_counter() - started

        commits.count = 0
        started = time.perf_counter()
        delivered = deliver(app, NOW)
        deliver_s = time.perf_counter() - started
        deliver_commits = commits.count

        started = time.perf_counter()
        after = plan_drips(app, NOW)  # advances the 10,000 just delivered
        advance_s = time.perf_counter() - started
        started = time.perf_counter()
        plan_drips(app, NOW)
        quiet_s = time.perf_counter() - started
        app.close()
    sent = int(delivered["sent"])
    return {
        "backend": engine.dialect.name,
        "enrollments": size,
        "due": due,
        "populate_s": populate_s,
        "planned": first["planned"],
        "advanced": first["advanced"],
        "plan_s": plan_s,
        "plan_rows_per_s": (first["planned"] + first["advanced"]) / plan_s,
        "plan_commits_per_1000": 1000 * plan_commits / max(1, first["planned"]),
        "idle_pass_ms": idle_s * 1000,
        "idle_planned": idle["planned"],
        "advance_after_s": advance_s,
        "advanced_after": after["advanced"],
        "quiet_pass_ms": quiet_s * 1000,
        "sent": sent,
        "deliver_s": deliver_s,
        "emails_per_s": sent / deliver_s if deliver_s else 0.0,
        "deliver_commits_per_1000": 1000 * deliver_commits / max(1, sent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--due", type=float, default=0.01, help="fraction due now")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/nl_drip"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            results.append(run(f"sqlite:///{tmp}/bench.db", args.size, args.due))
        if args.backend in ("postgresql", "both"):
            results.append(run(args.postgres_url, args.size, args.due))
    for r in results:
        print(
            f"{r['backend']:>10}: {r['enrollments']:,} enrollments (built in "
            f"{r['populate_s']:.1f} s), {r['due']:,} due + {r['advanced']:,} just sent\n"
            f"            plan pass {r['plan_s']:.2f} s: planned {r['planned']:,}, advanced "
            f"{r['advanced']:,} ({r['plan_rows_per_s']:,.0f} rows/s, "
            f"{r['plan_commits_per_1000']:.1f} commits per 1,000 planned)\n"
            f"            next pass, nothing due, {r['due']:,} in flight: "
            f"{r['idle_pass_ms']:.1f} ms\n"
            f"            deliver {r['sent']:,} in {r['deliver_s']:.2f} s "
            f"({r['emails_per_s']:,.0f} emails/s incl. rendering), "
            f"{r['deliver_commits_per_1000']:.1f} ledger commits per 1,000 emails\n"
            f"            advance pass after delivery {r['advance_after_s']:.2f} s "
            f"({r['advanced_after']:,} advanced); then a quiet pass "
            f"{r['quiet_pass_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
