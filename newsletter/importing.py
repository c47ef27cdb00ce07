"""Bulk CSV import: streamed, batched, idempotent, with a per-row report.

A bad row never aborts the good ones; each batch is one transaction, so a crash loses at
most the batch in flight and a rerun skips every address already imported.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.db import transaction
from newsletter.enrollment import enroll_new_subscribers
from newsletter.errors import InvalidEmailError, NewsletterError
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscriptions import (
    clean_first_name,
    clean_tags,
    new_public_id,
    queue_confirmations,
    resolve_timezone,
)

BATCH = 1000
EMAIL_COLUMNS = ("email", "email_address", "EMAIL")


class ImportFileError(NewsletterError, ValueError):
    """The file cannot be imported at all (no email column, not CSV)."""


@dataclass(frozen=True)
class Skipped:
    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    taken: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.taken + len(self.skipped)


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    first_name: str | None
    timezone: str | None
    tags: list[str]


def import_csv(
    app: App,
    path: Path,
    *,
    confirmed: bool,
    now: datetime,
    progress: Callable[[int], None] = lambda n: None,
) -> ImportReport:
    """Import ``path``; ``progress`` is called with the number of rows handled per batch."""
    report = ImportReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for batch in _batches(_read(handle, report)):
            with transaction(app.sessions) as session:
                _import_batch(
                    app,
                    session,
                    batch,
                    confirmed=confirmed,
                    source=path.name,
                    now=now,
                    report=report,
                )
            progress(len(batch))
    return report


def _read(handle: TextIO, report: ImportReport) -> Iterator[_Row]:
    reader = csv.DictReader(handle)
    columns = reader.fieldnames or []
    email_column = next((c for c in EMAIL_COLUMNS if c in columns), None)
    if email_column is None:
        raise ImportFileError(
            f"no email column found (header is {columns!r}); "
            "the first line must name the columns: email,first_name,timezone,tags"
        )
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        raw = (row.get(email_column) or "").strip()
        try:
            email = normalize_email(raw)
        except InvalidEmailError as exc:
            report.skipped.append(Skipped(line, raw, f"invalid email: {exc.reason}"))
            continue
        if email in seen:
            report.skipped.append(Skipped(line, email, "duplicate in this file"))
            continue
        seen.add(email)
        yield _Row(
            line=line,
            email=email,
            first_name=clean_first_name(row.get("first_name")),
            timezone=(row.get("timezone") or "").strip() or None,
            tags=clean_tags((row.get("tags") or "").replace(";", ",").split(",")),
        )


def _batches(rows: Iterable[_Row]) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _import_batch(
    app: App,
    session: Session,
    batch: list[_Row],
    *,
    confirmed: bool,
    source: str,
    now: datetime,
    report: ImportReport,
) -> None:
    emails = [r.email for r in batch]
    existing = set(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails))))
    hashes = {email_hash(e): e for e in emails}
    suppressed = dict(
        session.execute(
            select(Suppression.email_hash, Suppression.reason).where(
                Suppression.email_hash.in_(list(hashes))
            )
        ).all()
    )
    fresh: list[_Row] = []
    for row in batch:
        if row.email in existing:
            report.skipped.append(Skipped(row.line, row.email, "already a subscriber"))
        elif email_hash(row.email) in suppressed:
            reason = suppressed[email_hash(row.email)]
            report.skipped.append(Skipped(row.line, row.email, f"suppressed ({reason})"))
        else:
            fresh.append(row)
    if not fresh:
        return
    status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
    values: list[dict[str, Any]] = [
        {
            "public_id": new_public_id(),
            "email": r.email,
            "first_name": r.first_name,
            "timezone": resolve_timezone(r.timezone, app.settings.default_timezone),
            "status": status.value,
            "tags": r.tags,
            "attributes": {},
            "source": f"import:{source}",
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now if confirmed else None,
            "last_confirmation_at": None if confirmed else now,
            "soft_bounces": 0,
        }
        for r in fresh
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Subscriber).on_conflict_do_nothing(index_elements=["email"])
    inserted = dict(
        session.execute(statement.returning(Subscriber.email, Subscriber.id), values).all()
    )
    for row in fresh:
        if row.email not in inserted:  # subscribed concurrently
            report.skipped.append(Skipped(row.line, row.email, "already a subscriber"))
    report.taken += len(inserted)
    kind = ConsentKind.IMPORTED if confirmed else ConsentKind.SUBSCRIBED
    session.add_all(
        ConsentEvent(
            subscriber_id=sid,
            kind=kind.value,
            at=now,
            source=f"import:{source}",
            consent_text="earlier consent, imported list" if confirmed else None,
        )
        for sid in inserted.values()
    )
    if confirmed:
        enroll_new_subscribers(session, inserted.values(), app.library.sequences(), now=now)
    else:
        queue_confirmations(session, inserted.values(), now=now)
