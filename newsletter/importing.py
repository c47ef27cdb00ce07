"""Bulk CSV import: streamed, batched, idempotent, with a per-row report.

A bad row never aborts the good ones; each batch is one transaction, so a crash loses at
most the batch in flight and a rerun skips every address already imported.

Decisions:

- The file must be UTF-8 (a BOM is fine). Each physical line is judged on its own: a record
  touching a line that is not UTF-8 is skipped ("line N is not UTF-8"), the rest go in.
- A record the ``csv`` module cannot read (e.g. a field over its 131,072-character limit) is
  skipped with its line and the parser's message; reading goes on with the next line.
- Columns other than email, first_name, timezone and tags become custom fields
  (``attributes``, string values; an empty cell sets nothing). A column whose name is not
  a valid field name stops the import; a value over the limits skips its row.
- Only a file that cannot be read at all (missing, a directory, no readable header, no
  email column) stops the import, with an ``ImportFileError``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter import attributes as custom_fields
from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.automation.enrolling import on_tags_added
from newsletter.db import transaction
from newsletter.enrollment import enroll_new_subscribers
from newsletter.errors import InvalidAttributes, InvalidEmailError, NewsletterError
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
)
from newsletter.webhooks.emit import subscribers_changed
from newsletter.zones import find_zone

BATCH = 1000
EMAIL_COLUMNS = ("email", "email_address", "EMAIL")
STANDARD_COLUMNS = ("first_name", "timezone", "tags")
MAX_HEADER_CHARS = 64 * 1024  # a longer first line is not a CSV header
MAX_SHOWN = 100  # characters of a bad cell repeated in the report
NOT_UTF8 = "line {line} is not UTF-8; re-save the file as CSV UTF-8"


class ImportFileError(NewsletterError, ValueError):
    """The file cannot be imported at all (unreadable, no header, no email column)."""


@dataclass(frozen=True)
class Skipped:
    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    taken: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    # Rows taken with the default zone because theirs is unknown (line, email, note).
    zone_notes: list[Skipped] = field(default_factory=list)
    unknown_zones: dict[str, int] = field(default_factory=dict)  # name -> rows

    def note_unknown_zone(self, line: int, email: str, zone: str, default: str) -> None:
        shown = zone[:MAX_SHOWN]
        self.unknown_zones[shown] = self.unknown_zones.get(shown, 0) + 1
        self.zone_notes.append(
            Skipped(line, email, f"unknown time zone {shown!r}; imported with {default}")
        )

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
    attributes: dict[str, Any] = field(default_factory=dict)


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
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    # surrogateescape keeps undecodable bytes as lone surrogates, so ``_Lines`` can tell
    # exactly which physical lines were not UTF-8 while the stream goes on.
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        for batch in _batches(_read(_Lines(text, path), report)):
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


def count_new_addresses(app: App, path: Path) -> int:
    """How many rows of ``path`` would become new subscribers (reads, writes nothing).

    The same checks as ``import_csv``: valid, not repeated in the file, not already a
    subscriber, not suppressed. ``subscribers import`` asks before queueing that many
    confirmation emails.
    """
    report = ImportReport()
    count = 0
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        for batch in _batches(_read(_Lines(text, path), report)):
            emails = [r.email for r in batch]
            with app.sessions() as session:
                existing = set(
                    session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails)))
                )
                hashes = [email_hash(e) for e in emails if e not in existing]
                suppressed = set(
                    session.scalars(
                        select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes))
                    )
                )
            count += sum(1 for h in hashes if h not in suppressed)
    return count


def count_lines(path: Path) -> int:
    """Physical lines after the header (for a progress bar); ``ImportFileError`` if unreadable."""
    try:
        with path.open("rb") as handle:
            return max(0, sum(1 for _ in handle) - 1)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> ImportFileError:
    return ImportFileError(
        f"cannot read {str(path)!r}: {exc.strerror or exc}; give the path of a CSV file "
        "(columns email,first_name,timezone,tags)"
    )


class _Lines:
    """Physical lines of the text stream, remembering which ones were not UTF-8."""

    def __init__(self, text: io.TextIOWrapper, path: Path) -> None:
        self._text = text
        self._path = path
        self.number = 0
        self.not_utf8: list[int] = []  # since the last ``take_not_utf8``

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            line = self._text.readline() if self.number else self._header()
        except OSError as exc:  # e.g. a directory where open() succeeds, a failing disk
            raise _unreadable(self._path, exc) from None
        if not line:
            raise StopIteration
        self.number += 1
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the bytes were not UTF-8
            self.not_utf8.append(self.number)
        return line

    def _header(self) -> str:
        line = self._text.readline(MAX_HEADER_CHARS)
        if len(line) >= MAX_HEADER_CHARS and not line.endswith(("\n", "\r")):
            raise ImportFileError(
                f"the first line is longer than {MAX_HEADER_CHARS:,} characters, so it is not "
                "a CSV header; the first line must name the columns: "
                "email,first_name,timezone,tags"
            )
        return line

    def take_not_utf8(self) -> int | None:
        """The first non-UTF-8 line read since the last call, if any."""
        first = self.not_utf8[0] if self.not_utf8 else None
        self.not_utf8.clear()
        return first


class _CsvReader(Protocol):
    line_num: int

    def __next__(self) -> list[str]: ...


def _read(lines: _Lines, report: ImportReport) -> Iterator[_Row]:
    reader: _CsvReader = csv.reader(lines)
    columns = _header(reader, lines)
    email_column = next((c for c in EMAIL_COLUMNS if c in columns), None)
    if email_column is None:
        raise ImportFileError(
            f"no email column found (header is {[c[:MAX_SHOWN] for c in columns[:20]]!r}); "
            "the first line must name the columns: email,first_name,timezone,tags"
        )
    extra = [c for c in columns if c not in (*EMAIL_COLUMNS, *STANDARD_COLUMNS)]
    for name in extra:
        try:
            custom_fields.check_name(name, what="column")
        except InvalidAttributes as exc:
            raise ImportFileError(
                f"{exc}; extra columns become custom fields, so rename the column"
            ) from None
    seen: set[str] = set()
    for line, values, not_utf8 in _records(reader, lines, report):
        row = dict(zip(columns, values, strict=False))
        raw = (row.get(email_column) or "").strip()
        if not_utf8 is not None:
            shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            report.skipped.append(
                Skipped(not_utf8, shown[:MAX_SHOWN], NOT_UTF8.format(line=not_utf8))
            )
            continue
        try:
            email = normalize_email(raw)
        except InvalidEmailError as exc:
            report.skipped.append(Skipped(line, raw[:MAX_SHOWN], f"invalid email: {exc.reason}"))
            continue
        if email in seen:
            report.skipped.append(Skipped(line, email, "duplicate in this file"))
            continue
        seen.add(email)
        try:
            fields = custom_fields.validate(
                {name: row[name] for name in extra if row.get(name, "").strip()}
            )
        except InvalidAttributes as exc:
            report.skipped.append(Skipped(line, email, str(exc)))
            continue
        yield _Row(
            line=line,
            email=email,
            first_name=clean_first_name(row.get("first_name")),
            timezone=(row.get("timezone") or "").strip() or None,
            tags=clean_tags((row.get("tags") or "").replace(";", ",").split(",")),
            attributes=fields,
        )


def _header(reader: _CsvReader, lines: _Lines) -> list[str]:
    try:
        columns = next(reader, [])
    except csv.Error as exc:
        raise ImportFileError(
            f"cannot read the first line as CSV ({exc}); the first line must name the "
            "columns: email,first_name,timezone,tags"
        ) from None
    if lines.take_not_utf8() is not None:
        raise ImportFileError(
            "the first line (the header) is not UTF-8; re-save the file as CSV UTF-8"
        )
    return columns


def _records(
    reader: _CsvReader, lines: _Lines, report: ImportReport
) -> Iterator[tuple[int, list[str], int | None]]:
    """Non-empty records: (last physical line, values, first non-UTF-8 line or None).

    A record ``csv`` cannot parse goes into the report and reading goes on with the next line.
    """
    while True:
        before = reader.line_num
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.take_not_utf8()
            report.skipped.append(Skipped(reader.line_num, "", f"cannot read as CSV: {exc}"))
            if reader.line_num == before:  # nothing consumed: it would fail forever
                return
            continue
        not_utf8 = lines.take_not_utf8()
        if values or not_utf8 is not None:  # a blank line is no record
            yield reader.line_num, values, not_utf8


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
    default_zone = app.settings.default_timezone
    zones: dict[str, str] = {}
    for r in fresh:
        if r.timezone and find_zone(r.timezone) is None:
            report.note_unknown_zone(r.line, r.email, r.timezone, default_zone)
            zones[r.email] = default_zone
        else:
            zones[r.email] = r.timezone or default_zone
    values: list[dict[str, Any]] = [
        {
            "public_id": new_public_id(),
            "email": r.email,
            "first_name": r.first_name,
            "timezone": zones[r.email],
            "status": status.value,
            "tags": r.tags,
            "attributes": r.attributes,
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
    subscribers_changed(session, "subscriber.created", list(inserted.values()), now=now)
    if confirmed:
        subscribers_changed(session, "subscriber.confirmed", list(inserted.values()), now=now)
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
        sequences = app.library.sequences()
        enroll_new_subscribers(session, inserted.values(), sequences, now=now)
        if any(s.triggers.on_tags or s.triggers.exit_tags for s in sequences):
            tagged = [sid for r in fresh if r.tags and (sid := inserted.get(r.email))]
            for subscriber in session.scalars(select(Subscriber).where(Subscriber.id.in_(tagged))):
                on_tags_added(session, subscriber, subscriber.tags, sequences, now=now)
    else:
        queue_confirmations(session, inserted.values(), now=now)
