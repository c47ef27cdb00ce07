"""A sending worker for benches: queue emails, then deliver them while something else runs.

    python -m bench.sender --count N --outbox DIR [--sendgrid-url URL]
        (NEWSLETTER_* from the environment)

Adds ``N`` active subscribers (``sending<n>@example.org``) and one queued drip email each,
due a minute ago (real time), and prints ``QUEUED``; then runs ``deliver_due`` with the
outbox backend into ``DIR`` (or SendGrid's, posting to ``--sendgrid-url``: the bench's
sink) until nothing is left to claim, at the real time, as the ``deliver`` job does, and
prints ``SENT <emails> <seconds>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_dispatch import API_KEY, populate
from newsletter.app import App
from newsletter.delivery.base import Mailer
from newsletter.delivery.outbox import OutboxMailer
from newsletter.delivery.sendgrid import SendGridMailer
from newsletter.dispatch import deliver_due
from newsletter.ledger import worker_name
from newsletter.models import DeliveryKind
from newsletter.settings import load_settings

ITEM = "tips/meet-your-ql"
DRIP = DeliveryKind.DRIP  # what it queued; serve's confirmations are serve's to send


def queue(app: App, count: int) -> None:
    """``count`` subscribers ``sending<n>@example.org`` and a drip email each (ledger key
    ``bench-send:<id>``), due a minute ago."""
    due = datetime.now(UTC) - timedelta(minutes=1)
    populate(app.engine, count, ITEM, prefix="sending", key="bench-send", due=due)


def send(app: App) -> tuple[int, float]:
    started = time.perf_counter()
    sent = 0
    while True:
        report = deliver_due(
            app, now=datetime.now(UTC), worker=worker_name("bench-sender"), kinds=[DRIP]
        )
        sent += report.outcomes.get("sent", 0)
        if not report.claimed:
            return sent, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--sendgrid-url", default="")
    args = parser.parse_args(argv)
    mailer: Mailer = OutboxMailer(args.outbox)
    if args.sendgrid_url:
        mailer = SendGridMailer(API_KEY, args.sendgrid_url)
    app = App(load_settings(dict(os.environ)), mailer=mailer)
    queue(app, args.count)
    print("QUEUED", flush=True)
    sent, seconds = send(app)
    app.close()
    print(f"SENT {sent} {seconds:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
