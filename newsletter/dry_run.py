"""``tick --dry-run``: every job runs for real code-wise, and nothing is kept.

The jobs run on an ``App`` whose sessions share one database connection inside an outer
transaction; each job's own transactions become savepoints
(``join_transaction_mode="create_savepoint"``) and the outer transaction is rolled back
at the end, so the planners and the claim run their real queries and nothing is written.
The mailer is a ``RecordingMailer``: it accepts every email and sends none. What would
be sent is read from the ledger before the rollback.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from newsletter.app import App
from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.models import Delivery


class RecordingMailer:
    """The null mail adapter: every email is accepted and kept in ``sent``; none leaves."""

    name = "dry-run"

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.sent.extend(messages)
        return [
            SendResult(m.delivery_id, SendStatus.SENT, provider_message_id=f"dry-{m.delivery_id}")
            for m in messages
        ]

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class WouldSend:
    kind: str
    item_id: str
    to_email: str


@dataclass
class DryRunReport:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    emails: list[WouldSend] = field(default_factory=list)

    def by_item(self) -> list[tuple[str, str, int]]:
        """(kind, item, count), most emails first."""
        counts = Counter((e.kind, e.item_id) for e in self.emails)
        return [(k, i, n) for (k, i), n in sorted(counts.items(), key=lambda kv: -kv[1])]


Job = Callable[[App, datetime], dict[str, Any]]

# Jobs that talk to other systems than the mailer: a dry run cannot roll that back, so it
# reports them as skipped instead of running them.
NOT_IN_DRY_RUN = {
    "webhooks": "dry run: nothing is posted to webhook endpoints",
    "bounces": "dry run: the bounce mailbox is not read (reading moves its messages)",
}


@contextmanager
def rolled_back(app: App) -> Iterator[tuple[App, RecordingMailer]]:
    """An ``App`` over ``app``'s database whose every write is rolled back on exit."""
    connection = app.engine.connect()
    outer = connection.begin()
    mailer = RecordingMailer()
    dry = App(app.settings, mailer=mailer, clock=app.clock, sleep=lambda seconds: None)
    dry.__dict__["engine"] = app.engine
    dry.__dict__["sessions"] = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    dry.__dict__["library"] = app.library
    try:
        yield dry, mailer
    finally:
        outer.rollback()
        connection.close()


def dry_run(app: App, jobs: dict[str, Job], *, now: datetime) -> DryRunReport:
    """Run ``jobs`` in order as of ``now``; report their results and the emails they'd send."""
    report = DryRunReport()
    with rolled_back(app) as (dry, mailer):
        for name, job in jobs.items():
            if name in NOT_IN_DRY_RUN:
                report.results[name] = {"skipped": NOT_IN_DRY_RUN[name]}
                continue
            report.results[name] = job(dry, now)
        ids = [m.delivery_id for m in mailer.sent]
        with dry.sessions() as session:
            rows = session.execute(
                select(Delivery.id, Delivery.kind, Delivery.item_id, Delivery.to_email).where(
                    Delivery.id.in_(ids)
                )
            ).all()
        found = {row.id: row for row in rows}
        for message in mailer.sent:
            row = found.get(message.delivery_id)
            report.emails.append(
                WouldSend(
                    row.kind if row else "?",
                    row.item_id if row else "?",
                    message.to_email,
                )
            )
    return report
