"""The ``bounces`` job: read the bounce mailbox, act on each report once, move it aside.

For every message in the folder:

1. its key (``report_key``) is looked up in ``bounce_reports``: a report already handled
   (the move after an earlier run failed) is only moved again;
2. otherwise it is parsed and, in one transaction, recorded in ``bounce_reports`` and
   applied (``apply_bounces``: bounced, complained, or one more soft bounce);
3. then it is moved to the ``processed`` folder, or to the ``unparsed`` folder when it is
   not a report we can act on (kept for a person to read, never deleted).

The database commits before the move, so a crash in between never loses a report nor
applies it twice. A mailbox that cannot be read is logged and reported in the job's
result; the scheduler carries on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.bounces.apply import BounceFact, apply_bounces
from newsletter.bounces.mailbox import IMAPMailbox, MailboxError, parse_imap_url
from newsletter.bounces.reports import ReportError, parse_report, report_key
from newsletter.db import transaction
from newsletter.models import BounceReport

log = logging.getLogger(__name__)


def run_bounces(app: App, now: datetime) -> dict[str, Any]:
    settings = app.settings
    if not settings.bounce_imap_url:
        return {"enabled": False}
    config = parse_imap_url(settings.bounce_imap_url)
    counts = {"processed": 0, "unparsed": 0, "already": 0}
    try:
        with IMAPMailbox(config) as mailbox:
            for uid, raw in list(mailbox.messages()):
                outcome = handle_report(app, raw, now=now)
                counts[outcome] += 1
                folder = config.unparsed if outcome == "unparsed" else config.processed
                mailbox.move(uid, folder)
    except MailboxError as exc:
        log.error("bounces: %s", exc)
        return {**counts, "error": str(exc)}
    return counts


def handle_report(app: App, raw: bytes, *, now: datetime) -> str:
    """Record and apply one report; ``processed``, ``unparsed`` or ``already``."""
    key = report_key(raw)
    with transaction(app.sessions) as session:
        if session.scalar(select(BounceReport.id).where(BounceReport.report_key == key)):
            return "already"
        try:
            report = parse_report(raw, bounce_address=app.settings.bounce_address)
        except ReportError as exc:
            log.warning("bounces: a message kept aside in the unparsed folder: %s", exc)
            session.add(
                BounceReport(
                    report_key=key,
                    kind="unparsed",
                    outcome=str(exc)[:200],
                    received_at=now,
                )
            )
            return "unparsed"
        facts = [
            BounceFact(
                kind=f.kind,
                delivery_id=f.delivery_id,
                recipient=f.recipient,
                reason=f.reason,
                source="report",
                source_key=f"report:{key[:40]}:{index}",
            )
            for index, f in enumerate(report.facts)
        ]
        outcomes = apply_bounces(session, facts, now=now)
        first = report.facts[0]
        session.add(
            BounceReport(
                report_key=key,
                kind=first.kind,
                delivery_id=first.delivery_id,
                email_hash=email_hash(first.recipient) if first.recipient else None,
                outcome="; ".join(outcomes)[:200],
                received_at=now,
            )
        )
        log.info("bounces: %s", "; ".join(outcomes))
        return "processed"
