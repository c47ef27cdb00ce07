"""The subscribe posts of one group-commit batch, written set-based.

``subscribe_in`` costs two round trips per post on PostgreSQL (on a busy machine each
costs about a millisecond) and three statements per post on SQLite (each a few tens of
microseconds of SQLAlchemy and driver work under the web process's interpreter lock);
group commit runs a batch's posts one after the other on one connection. So a batch of
plain posts (double opt-in, no source event id, each address once in the batch) is
written in a fixed number of statements whatever its size: one upsert of every row
(skipping suppressed addresses) returning the rows, then, on PostgreSQL, one statement for
every consent record and confirmation email (SQLite: one ``executemany`` each). The
decisions between them are ``subscribe_in``'s own, made per post in Python, in the
batch's order; every other post (single opt-in, a source's event id, an address posted
twice in the batch) runs through ``subscribe_in`` afterwards, in order. A repeated post
of an existing address adds its ``UPDATE``, as alone.

The outcomes and the rows written are the same as running the posts one by one
(``tests/test_subscribe_batch.py`` checks it on generated batches), each subscriber's
rows in the same order; only the ids of different subscribers' consent records and
emails within one batch may interleave differently. The batch commits or fails as one,
and group commit then runs each post alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Result, String, column, text
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.models import ConsentKind, SubscriberStatus, UTCDateTime
from newsletter.subscriptions import (
    _CONFIRMATION,
    _CONSENT,
    _REFRESH,
    CONFIRMATION_INTERVAL,
    CONFIRMATION_ITEM,
    UPSERT_COLUMNS,
    SubscribeOutcome,
    SubscribeRequest,
    _confirmation,
    _consent_values,
    _listens,
    _new_subscriber,
    _refresh,
    subscribe_in,
)
from newsletter.webhooks.emit import subscribers_changed


@dataclass(frozen=True)
class SubscribeJob:
    """One post for group commit: ``job(session, facts)`` runs it alone; ``many`` runs
    a batch of them together."""

    app: App
    request: SubscribeRequest
    now: datetime
    email: str  # normalised (a bad address was refused before the job was made)

    def __call__(self, session: Session, facts: dict[str, Any]) -> SubscribeOutcome:
        return subscribe_in(
            session, self.app, self.request, now=self.now, email=self.email, facts=facts
        )

    @staticmethod
    def many(
        session: Session, facts: dict[str, Any], jobs: Sequence[SubscribeJob]
    ) -> list[SubscribeOutcome]:
        return subscribe_many(session, facts, jobs)


def subscribe_job(app: App, request: SubscribeRequest, *, now: datetime) -> SubscribeJob:
    """Raises ``InvalidEmailError`` for a bad address (before anything is queued)."""
    return SubscribeJob(app, request, now, normalize_email(request.email))


def subscribe_many(
    session: Session, facts: dict[str, Any], jobs: Sequence[SubscribeJob]
) -> list[SubscribeOutcome]:
    """Every job's outcome, as if run one by one in order, in the caller's transaction."""
    outcomes: list[SubscribeOutcome | None] = [None] * len(jobs)
    posted = Counter(job.email for job in jobs)
    plain = [
        i
        for i, job in enumerate(jobs)
        if posted[job.email] == 1 and not job.request.single_opt_in and job.request.event_id is None
    ]
    if len(plain) > 1:
        together = _plain(session, facts, [jobs[i] for i in plain])
        for i, outcome in zip(plain, together, strict=True):
            outcomes[i] = outcome
    for i, job in enumerate(jobs):
        if outcomes[i] is None:
            outcomes[i] = job(session, facts)
    return [outcome for outcome in outcomes if outcome is not None]


def _plain(
    session: Session, facts: dict[str, Any], jobs: Sequence[SubscribeJob]
) -> list[SubscribeOutcome]:
    """Distinct addresses, double opt-in, no event id: two statements for them all
    (three on SQLite), plus an update per address that existed."""
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    values = [_new_subscriber(job.app, job.email, job.request, now=job.now) for job in jobs]
    upsert = _upsert_postgresql if postgres else _upsert_sqlite
    rows = {row.email: row for row in upsert(connection, jobs, values)}
    outcomes: list[SubscribeOutcome] = []
    consents: list[dict[str, Any]] = []
    confirmations: list[dict[str, Any]] = []
    for job, new in zip(jobs, values, strict=True):
        row = rows.get(job.email)
        if row is None:  # suppressed: nothing written
            outcomes.append(SubscribeOutcome.SUPPRESSED)
            continue
        created = row.public_id == new["public_id"]
        if created and _listens(session, facts, "subscriber.created"):
            subscribers_changed(session, "subscriber.created", [row.id], now=job.now)
        if row.status == SubscriberStatus.ACTIVE.value:
            outcomes.append(SubscribeOutcome.ALREADY_ACTIVE)
            continue
        if row.status in (SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value):
            outcomes.append(SubscribeOutcome.SUPPRESSED)
            continue
        last = None if created else row.last_confirmation_at
        throttled = (
            row.status == SubscriberStatus.PENDING.value
            and last is not None
            and job.now - last < CONFIRMATION_INTERVAL
        )
        if not created:
            changes = _refresh(job.app, row, job.request, now=job.now)
            changes["last_confirmation_at"] = row.last_confirmation_at if throttled else job.now
            connection.execute(_REFRESH, changes)
        consents.append(_consent_values(row.id, ConsentKind.SUBSCRIBED, job.request, now=job.now))
        if throttled:
            outcomes.append(SubscribeOutcome.THROTTLED)
            continue
        confirmations.append(_confirmation(row.id, job.now))
        outcomes.append(SubscribeOutcome.CONFIRMATION_QUEUED)
    if consents and postgres:
        connection.execute(_CONSENTS_AND_CONFIRMATIONS, _columns(consents, confirmations))
    elif consents:  # SQLite: the driver's executemany, one statement each
        connection.execute(_CONSENT, consents)
        if confirmations:
            connection.execute(_CONFIRMATION, confirmations)
    return outcomes


def _upsert_postgresql(
    connection: Connection, jobs: Sequence[SubscribeJob], values: list[dict[str, Any]]
) -> Result[Any]:
    """Every row in one statement, one array per column."""
    return connection.execute(
        _UPSERT_MANY,
        {
            "public_id": [v["public_id"] for v in values],
            "email": [v["email"] for v in values],
            "first_name": [v["first_name"] for v in values],
            "timezone": [v["timezone"] for v in values],
            "tags": [json.dumps(v["tags"]) for v in values],
            "attributes": [json.dumps(v["attributes"]) for v in values],
            "source": [v["source"] for v in values],
            "now": [job.now for job in jobs],
            "hash": [email_hash(job.email) for job in jobs],
        },
    )


def _upsert_sqlite(
    connection: Connection, jobs: Sequence[SubscribeJob], values: list[dict[str, Any]]
) -> Result[Any]:
    """Every row in one statement: one JSON array of rows (``json_each``), each value as
    the one-by-one upsert would bind it (times through the column type, JSON as text)."""
    stored_time = UTCDateTime().dialect_impl(connection.dialect).bind_processor(connection.dialect)
    assert stored_time is not None  # SQLite's DATETIME is stored as text
    rows = [
        [
            v["public_id"],
            v["email"],
            v["first_name"],
            v["timezone"],
            json.dumps(v["tags"]),
            json.dumps(v["attributes"]),
            v["source"],
            stored_time(job.now),
            email_hash(job.email),
        ]
        for job, v in zip(jobs, values, strict=True)
    ]
    return connection.execute(_UPSERT_MANY_SQLITE, {"rows": json.dumps(rows)})


def _columns(consents: list[dict[str, Any]], confirmations: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows as one array per column (``unnest`` turns them back into rows)."""
    names = ("subscriber_id", "kind", "at", "ip", "user_agent", "source", "consent_text")
    arrays: dict[str, Any] = {f"c_{name}": [c[name] for c in consents] for name in names}
    arrays["c_source_event_id"] = [c["source_event_id"] for c in consents]
    arrays["d_key"] = [d["key"] for d in confirmations]
    arrays["d_subscriber_id"] = [d["subscriber_id"] for d in confirmations]
    arrays["d_now"] = [d["now"] for d in confirmations]
    arrays["d_kind"] = confirmations[0]["delivery_kind"] if confirmations else "confirmation"
    arrays["d_status"] = confirmations[0]["status"] if confirmations else "queued"
    arrays["d_item_id"] = CONFIRMATION_ITEM
    return arrays


# One array per column; a fixed statement whatever the batch size (prepared once).
_UPSERT_MANY = text(
    """
    INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
                             attributes, source, created_at, updated_at, soft_bounces,
                             last_confirmation_at)
    SELECT v.public_id, v.email, v.first_name, v.timezone, 'pending', v.tags, v.attributes,
           v.source, v.now, v.now, 0, v.now
    FROM unnest(CAST(:public_id AS text[]), CAST(:email AS text[]),
                CAST(:first_name AS text[]), CAST(:timezone AS text[]),
                CAST(:tags AS json[]), CAST(:attributes AS json[]), CAST(:source AS text[]),
                CAST(:now AS timestamptz[]), CAST(:hash AS text[]))
         AS v(public_id, email, first_name, timezone, tags, attributes, source, now, hash)
    WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_hash = v.hash
                      AND s.reason IN ('bounced', 'complained'))
    ON CONFLICT (email) DO UPDATE SET email = excluded.email
    RETURNING id, public_id, status, last_confirmation_at, first_name, timezone, tags,
              attributes, email
    """
).columns(*UPSERT_COLUMNS, column("email", String))  # matched by position
# ``json_extract``, not ``->>``: the arrow operators need SQLite 3.38 (Ubuntu 22.04 has
# 3.37, RHEL 9 3.34); ``json_extract`` returns the same values (text for a JSON string).
_UPSERT_MANY_SQLITE = text(
    """
    INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
                             attributes, source, created_at, updated_at, soft_bounces,
                             last_confirmation_at)
    SELECT v.public_id, v.email, v.first_name, v.timezone, 'pending', v.tags, v.attributes,
           v.source, v.now, v.now, 0, v.now
    FROM (SELECT json_extract(value, '$[0]') AS public_id, json_extract(value, '$[1]') AS email,
                 json_extract(value, '$[2]') AS first_name,
                 json_extract(value, '$[3]') AS timezone, json_extract(value, '$[4]') AS tags,
                 json_extract(value, '$[5]') AS attributes,
                 json_extract(value, '$[6]') AS source, json_extract(value, '$[7]') AS now,
                 json_extract(value, '$[8]') AS hash, key
          FROM json_each(:rows) ORDER BY key) AS v
    WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email_hash = v.hash
                      AND s.reason IN ('bounced', 'complained'))
    ON CONFLICT (email) DO UPDATE SET email = excluded.email
    RETURNING id, public_id, status, last_confirmation_at, first_name, timezone, tags,
              attributes, email
    """
).columns(*UPSERT_COLUMNS, column("email", String))  # matched by position
# A data-modifying CTE runs to completion whatever the outer statement does.
_CONSENTS_AND_CONFIRMATIONS = text(
    """
    WITH consent AS (
        INSERT INTO consent_events (subscriber_id, kind, at, ip, user_agent, source,
                                    consent_text, source_event_id)
        SELECT * FROM unnest(CAST(:c_subscriber_id AS integer[]), CAST(:c_kind AS text[]),
                             CAST(:c_at AS timestamptz[]), CAST(:c_ip AS text[]),
                             CAST(:c_user_agent AS text[]), CAST(:c_source AS text[]),
                             CAST(:c_consent_text AS text[]),
                             CAST(:c_source_event_id AS text[]))
    )
    INSERT INTO deliveries (key, kind, item_id, due_at, subscriber_id, status, attempts,
                            created_at, updated_at)
    SELECT d.key, :d_kind, :d_item_id, d.now, d.subscriber_id, :d_status, 0, d.now, d.now
    FROM unnest(CAST(:d_key AS text[]), CAST(:d_subscriber_id AS integer[]),
                CAST(:d_now AS timestamptz[])) AS d(key, subscriber_id, now)
    ON CONFLICT (key) DO NOTHING
    """
)
