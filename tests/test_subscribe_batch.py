"""A group-commit batch of subscribe posts written together gives the outcomes and the rows
that running the same posts one by one gives (the set-based path on PostgreSQL and on
SQLite), for generated batches over generated starting states."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.group_commit import GroupCommit, run_jobs
from newsletter.models import ConsentEvent, Delivery, Subscriber
from newsletter.subscribe_batch import SubscribeJob, subscribe_job
from newsletter.subscriptions import SubscribeOutcome, SubscribeRequest, suppress
from tests.conftest import NOW
from tests.test_group_commit import run_held

ADDRESSES = [f"p{n}@example.org" for n in range(6)]
STATES = ["none", "pending-recent", "pending-old", "active", "unsubscribed", "bounced"]

posts = st.builds(
    SubscribeRequest,
    email=st.sampled_from([*ADDRESSES, "P0@Example.org"]),
    first_name=st.sampled_from([None, "Bo", "  Ann  "]),
    timezone=st.sampled_from([None, "Europe/Paris", "Nowhere/Else"]),
    tags=st.lists(st.sampled_from(["a", "b", "Back Pain"]), max_size=2).map(tuple),
    source=st.sampled_from([None, "https://shop.example/a"]),
    ip=st.sampled_from([None, "192.0.2.1"]),
    user_agent=st.sampled_from([None, "UA/1"]),
    single_opt_in=st.sampled_from([False] * 5 + [True]),
    event_id=st.sampled_from([None] * 6 + ["e1", "e2"]),
)
starts = st.fixed_dictionaries(
    {a: st.sampled_from(STATES) for a in ADDRESSES}
    | {"suppressed": st.lists(st.sampled_from(ADDRESSES), max_size=2, unique=True)}
)


def _start(session: Session, start: dict[str, Any]) -> None:
    for n, address in enumerate(ADDRESSES):
        state = start[address]
        if state == "none":
            continue
        status = state.split("-")[0]
        recent = state == "pending-recent"
        session.add(
            Subscriber(
                public_id=f"start{n}",
                email=address,
                first_name="Old",
                timezone="Europe/Berlin",
                status=status,
                tags=["old"],
                attributes={"k": "v"},
                created_at=NOW - timedelta(days=3),
                updated_at=NOW - timedelta(days=3),
                last_confirmation_at=NOW - timedelta(minutes=10 if recent else 300),
            )
        )
    for address in start["suppressed"]:
        suppress(session, address, "complained", now=NOW - timedelta(days=1))
    session.flush()


def _rows(session: Session) -> dict[str, Any]:
    """The tables, with ids and random public ids replaced by the address they belong to."""
    subscribers = session.scalars(select(Subscriber).order_by(Subscriber.email)).all()
    email = {s.id: s.email for s in subscribers}
    return {
        "subscribers": [
            (
                s.email,
                s.first_name,
                s.timezone,
                s.status,
                s.tags,
                s.attributes,
                s.source,
                s.created_at,
                s.updated_at,
                s.confirmed_at,
                s.last_confirmation_at,
            )
            for s in subscribers
        ],
        "consents": [
            (email[c.subscriber_id], c.kind, c.at, c.ip, c.user_agent, c.source, c.source_event_id)
            for c in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        ],
        "deliveries": [
            (
                email.get(d.subscriber_id or 0),
                _key(d.key, email),
                d.kind,
                d.item_id,
                d.status,
                d.due_at,
            )
            for d in session.scalars(select(Delivery).order_by(Delivery.id))
        ],
    }


def _key(key: str, email: dict[int, str]) -> str:
    """``confirm:<subscriber id>:<stamp>`` with the address for the id."""
    kind, subscriber_id, stamp = key.split(":")
    return f"{kind}:{email[int(subscriber_id)]}:{stamp}"


def _run(app: App, start: dict[str, Any], jobs: list[SubscribeJob], *, together: bool) -> Any:
    """Outcomes and rows, in a transaction that is rolled back afterwards."""
    with app.sessions() as session, session.begin():
        _start(session, start)
        facts: dict[str, Any] = {}
        if together:
            outcomes = run_jobs(session, facts, list(jobs))
        else:
            outcomes = [job(session, {}) for job in jobs]
        rows = _rows(session)
        session.rollback()
    return outcomes, rows


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(start=starts, batch=st.lists(posts, min_size=1, max_size=8))
def test_a_batch_written_together_equals_its_posts_one_by_one(
    app: App, start: dict[str, Any], batch: list[SubscribeRequest]
) -> None:
    jobs = [
        subscribe_job(app, post, now=NOW + timedelta(seconds=n)) for n, post in enumerate(batch)
    ]
    together, one_by_one = (_run(app, start, jobs, together=t) for t in (True, False))
    assert together[0] == one_by_one[0]  # the outcomes
    assert together[1]["subscribers"] == one_by_one[1]["subscribers"]
    # Per subscriber, the same rows in the same order (ids across subscribers of one
    # batch may interleave differently: nothing orders by them across subscribers).
    for table in ("consents", "deliveries"):
        by_address = sorted(together[1][table], key=lambda row: row[0])
        assert by_address == sorted(one_by_one[1][table], key=lambda row: row[0]), table


def test_distinct_new_addresses_take_two_statements_three_on_sqlite(app: App) -> None:
    """The point of the batch: eight new addresses are written by one upsert and, on
    PostgreSQL, one insert of their consents and confirmations (SQLite: one executemany
    of the consents, one of the confirmations)."""
    seen: list[str] = []
    event.listen(app.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    writer = GroupCommit(app.sessions)
    jobs = [
        subscribe_job(app, SubscribeRequest(email=f"n{i}@example.org"), now=NOW) for i in range(8)
    ]
    outcomes = run_held(writer, list(jobs))
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * 8
    assert writer.batches == 2  # the held job's, then the eight together
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "WITH", "UPDATE"))]
    if app.engine.dialect.name == "postgresql":
        assert len(writes) == 2, writes
    else:
        assert len(writes) == 3, writes
    with app.sessions() as session:
        assert len(session.scalars(select(Delivery)).all()) == 8
        assert len(session.scalars(select(ConsentEvent)).all()) == 8


@pytest.mark.parametrize("size", [2, 5])
def test_many_is_used_only_when_every_job_of_the_batch_offers_it(app: App, size: int) -> None:
    """A batch mixing kinds of job runs each job alone (none is handed to ``many``)."""
    plain = [
        subscribe_job(app, SubscribeRequest(email=f"m{i}@example.org"), now=NOW)
        for i in range(size)
    ]

    def other(_session: Session, _facts: dict[str, Any]) -> str:
        return "other"

    with app.sessions() as session, session.begin():
        outcomes = run_jobs(session, {}, [*plain, other])
        session.rollback()
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * size + ["other"]


def test_a_recent_pending_address_in_a_batch_is_throttled_as_alone(app: App) -> None:
    """Posted again within the hour, among others: consent recorded, no second email,
    and the time of the last confirmation kept (the throttle's clock)."""
    start: dict[str, Any] = dict.fromkeys(ADDRESSES, "none") | {"suppressed": []}
    start[ADDRESSES[0]] = "pending-recent"
    start[ADDRESSES[1]] = "bounced"
    jobs = [
        subscribe_job(app, SubscribeRequest(email=a, first_name="New"), now=NOW)
        for a in ADDRESSES[:3]
    ]
    together = _run(app, start, jobs, together=True)
    assert together[0] == [
        SubscribeOutcome.THROTTLED,
        SubscribeOutcome.SUPPRESSED,
        SubscribeOutcome.CONFIRMATION_QUEUED,
    ]
    assert together == _run(app, start, jobs, together=False)
    throttled = together[1]["subscribers"][0]
    assert throttled[1] == "New"
    assert throttled[-1] == NOW - timedelta(minutes=10)
