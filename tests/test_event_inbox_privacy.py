"""The event inbox and personal data: ``forget`` reaches every body not applied yet, in any
spelling of the address, without losing anyone else's events; old bodies are deleted by
the ``events`` job in bounded batches. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.errors import SubscriberNotFound
from newsletter.events.inbox import accept, apply_pending, drain, prune, store_body
from newsletter.jobs import JOBS
from newsletter.models import EventInbox, ProviderEvent, Subscriber, Suppression
from newsletter.settings import Settings, load_settings
from newsletter.subscriptions import forget
from tests.api_support import Clock, bearer, keys_and_client
from tests.conftest import NOW
from tests.test_event_inbox import body_of, count, inbox_state
from tests.test_events_store import T0, add_subscriber, make_event

ANN = "ann@example.org"
# Every way the bodies below spell Ann's address, for the search a demanding user runs.
ANN_ANYHOW = re.compile(
    rb"ann(?:@|\\u0040)example(?:\.|\\u002e)org|ann\\u0040example\\u002eorg", re.IGNORECASE
)


def bodies(app: App) -> list[bytes]:
    with app.sessions() as session:
        return [bytes(b) for b in session.scalars(select(EventInbox.body).order_by(EventInbox.id))]


def strings_in(value: Any) -> Iterator[str]:
    """Every string of a parsed JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)


def names_ann(body: bytes) -> bool:
    """A case-insensitive byte search (plain or JSON-escaped), then a JSON parse."""
    if ANN_ANYHOW.search(body):
        return True
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return any(ANN in text.lower() for text in strings_in(data))


def kept_with_problem(app: App, body: bytes) -> None:
    """A body the drain kept aside (``problem`` set), as if it had failed to apply."""
    with transaction(app.sessions) as session:
        row_id = store_body(session, body, now=NOW)
        session.execute(
            EventInbox.__table__.update()
            .where(EventInbox.id == row_id)
            .values(problem="EventPayloadError: kept for the test")
        )


def test_forget_erases_the_address_from_every_body_not_applied(app: App) -> None:
    """Ann in several bodies (pending and kept aside, parseable or not, in mixed case, with
    ``\\u0040`` for the @ and quoted in a bounce reason), Bob in the same bodies: after
    ``forget``, no row names Ann by a byte search or a parse; Bob's events all apply."""
    add_subscriber(app, ANN)
    add_subscriber(app, "bob@example.org")
    accept(
        app,
        body_of(
            [
                make_event("delivered", "Ann@Example.ORG", T0, message="m1", ip="10.1.2.3"),
                make_event(
                    "bounce",
                    "bob@example.org",
                    T0,
                    message="m2",
                    type="bounce",
                    reason="550 bob@example.org unknown; cc ANN@example.org",
                ),
            ]
        ),
        now=NOW,
    )
    escaped = (
        b'[{"email":"ann\\u0040EXAMPLE.org","event":"open","timestamp":1795000000,'
        b'"ip":"192.0.2.7","useragent":"Mail/1.0"},'
        b'{"email":"bob@example.org","event":"open","timestamp":1795000000}]'
    )
    accept(app, escaped, now=NOW)
    kept_with_problem(app, b'[{"email": "aNN@example.org", "event": "bounce",, "ip": "1.2.3.4"')
    kept_with_problem(app, b'[{"email": "ann\\u0040example\\u002eorg", "event": ')
    kept_with_problem(app, b'{"email": "ANN@EXAMPLE.ORG", "event": "spamreport"}')
    assert sum(names_ann(b) for b in bodies(app)) == 5

    forget(app, "Ann@Example.org", now=NOW)

    after = bodies(app)
    assert [names_ann(b) for b in after] == [False] * 5
    assert not any(b"10.1.2.3" in b or b"192.0.2.7" in b or b"Mail/1.0" in b for b in after)
    assert after[2] == b'[{"email": "<redacted>", "event": "bounce",, "ip": "1.2.3.4"'
    assert after[3] == b'[{"email": "<redacted>", "event": '
    report = drain(app, now=NOW)
    assert (report.bodies, report.problems) == (2, 0)
    with app.sessions() as session:
        bob = session.scalars(select(Subscriber).where(Subscriber.email == "bob@example.org"))
        assert bob.one().status == "bounced"
        events = session.execute(
            select(ProviderEvent.event, ProviderEvent.email_hash).order_by(ProviderEvent.event)
        ).all()
    bob_hash = email_hash("bob@example.org")
    assert sorted(events, key=str) == sorted(
        [("bounce", bob_hash), ("delivered", None), ("open", None), ("open", bob_hash)], key=str
    )


def test_another_address_that_contains_the_forgotten_one_is_kept(app: App) -> None:
    """``joann@example.org`` is not ``ann@example.org``: in a body naming both, Jo's events
    keep her address and are applied (her spam report suppresses her); Ann's lose hers."""
    add_subscriber(app, ANN)
    add_subscriber(app, "joann@example.org")
    accept(
        app,
        body_of(
            [
                make_event("spamreport", "joann@example.org", T0, message="m1"),
                make_event("delivered", ANN, T0, message="m2"),
            ]
        ),
        now=NOW,
    )
    forget(app, ANN, now=NOW)
    [body] = bodies(app)
    parsed = json.loads(body)
    assert [event.get("email") for event in parsed] == ["joann@example.org", None]
    assert drain(app, now=NOW).bodies == 1
    with app.sessions() as session:
        hashes = set(session.scalars(select(Suppression.email_hash)))
    assert hashes == {email_hash(ANN), email_hash("joann@example.org")}


def test_a_body_that_never_names_the_address_is_left_as_it_was(app: App) -> None:
    add_subscriber(app, ANN)
    original = b'[ {"email": "bob@example.org", "event": "open", "timestamp": 1795000000} ]'
    accept(app, original, now=NOW)
    kept_with_problem(app, b"[1,")
    forget(app, ANN, now=NOW)
    assert bodies(app) == [original, b"[1,"]


def test_forget_again_cleans_late_bodies_then_says_not_found(app: App) -> None:
    """SendGrid posts late events after a ``forget``: a second ``forget`` still erases the
    address from the inbox (committed) before answering that no subscriber has it."""
    add_subscriber(app, ANN)
    forget(app, ANN, now=NOW)
    kept_with_problem(app, b'[{"email": "ann@example.org", "event": "open",]')
    with pytest.raises(SubscriberNotFound):
        forget(app, ANN, now=NOW)
    assert [names_ann(b) for b in bodies(app)] == [False]


def test_the_cli_forget_reaches_the_inbox(cli_env: dict[str, Any]) -> None:
    app = App(load_settings(cli_env))
    try:
        add_subscriber(app, ANN)
        accept(app, body_of([make_event("open", ANN, T0)]), now=NOW)
        result = CliRunner().invoke(
            main, ["subscribers", "forget", ANN, "--yes"], env=cli_env, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert [names_ann(b) for b in bodies(app)] == [False]
    finally:
        app.close()


def test_the_api_forget_reaches_the_inbox(settings: Settings) -> None:
    app = App(settings)
    try:
        client, write, _read = keys_and_client(app, Clock(NOW))
        add_subscriber(app, ANN)
        kept_with_problem(app, body_of([make_event("open", ANN, T0)]))
        response = client.delete(f"/api/v1/subscribers/{ANN}?forget=true", headers=bearer(write))
        assert response.json() == {"email": ANN, "status": "forgotten"}
        assert [names_ann(b) for b in bodies(app)] == [False]
    finally:
        app.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_forget_waits_for_a_drain_applying_a_body_that_names_the_address(app: App) -> None:
    """PostgreSQL: a drain holds Ann's body (uncommitted); ``forget`` waits for it instead
    of redacting under it or deadlocking, then finds the body applied and empty."""
    add_subscriber(app, ANN)
    accept(app, body_of([make_event("bounce", ANN, T0, type="bounce")]), now=NOW)
    done = threading.Event()

    def forget_ann() -> None:
        forget(app, ANN, now=NOW)
        done.set()

    worker = threading.Thread(target=forget_ann)
    with transaction(app.sessions) as held:
        assert apply_pending(held, now=NOW, limit=1).bodies == 1
        worker.start()
        assert not done.wait(0.5)  # waiting for the drain's row lock
    worker.join(30)
    assert done.is_set()
    assert bodies(app) == [b""]
    with app.sessions() as session:
        assert session.scalar(select(Subscriber.id)) is None
        assert list(session.scalars(select(Suppression.reason))) == ["bounced"]


# ---- retention ------------------------------------------------------------------------


def add_row(
    app: App,
    *,
    received: datetime,
    applied: datetime | None = None,
    problem: str | None = None,
) -> int:
    with transaction(app.sessions) as session:
        return int(
            session.execute(
                insert(EventInbox)
                .values(
                    body=b"" if applied else b"[]",
                    received_at=received,
                    applied_at=applied,
                    problem=problem,
                    report={"received": 0} if applied else None,
                )
                .returning(EventInbox.id)
            ).scalar_one()
        )


def remaining(app: App) -> list[int]:
    with app.sessions() as session:
        return list(session.scalars(select(EventInbox.id).order_by(EventInbox.id)))


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_prune_deletes_old_applied_and_older_problem_bodies_never_pending_ones(
    app: App,
) -> None:
    """Applied more than 7 days ago: deleted (by when it was applied, not received); kept
    with a problem: after 90 days; pending: never, however old."""
    old_applied = add_row(app, received=days_ago(8), applied=days_ago(7.01))
    late_applied = add_row(app, received=days_ago(200), applied=days_ago(6.99))
    old_problem = add_row(app, received=days_ago(90.01), problem="ValueError: x")
    young_problem = add_row(app, received=days_ago(89.99), problem="ValueError: x")
    pending = add_row(app, received=days_ago(1000))
    edge = add_row(app, received=days_ago(7), applied=days_ago(7))  # not older: kept

    report = prune(app, now=NOW, applied_days=7, problem_days=90)

    assert (report.applied, report.problems, report.done) == (1, 1, True)
    assert remaining(app) == [late_applied, young_problem, pending, edge]
    assert {old_applied, old_problem}.isdisjoint(remaining(app))
    again = prune(app, now=NOW, applied_days=7, problem_days=90)
    assert (again.applied, again.problems, again.done) == (0, 0, True)


def test_prune_works_in_bounded_batches_and_a_run_stops_at_its_limit(app: App) -> None:
    """Five old applied bodies and three old kept ones, two rows per transaction, three
    transactions per run: the first run deletes six and says it is not done, the next
    finishes; the newer rows stay."""
    for n in range(5):
        add_row(app, received=days_ago(30 + n), applied=days_ago(30 + n))
    for _ in range(3):
        add_row(app, received=days_ago(365), problem="ValueError: x")
    fresh = add_row(app, received=NOW, applied=NOW)

    first = prune(app, now=NOW, applied_days=7, problem_days=90, batch=2, max_batches=3)
    assert (first.applied, first.problems, first.done) == (5, 0, False)
    second = prune(app, now=NOW, applied_days=7, problem_days=90, batch=2, max_batches=3)
    assert (second.applied, second.problems, second.done) == (0, 3, True)
    assert remaining(app) == [fresh]


def test_the_events_job_prunes_with_the_configured_retention(make_settings: Any) -> None:
    """``EVENT_INBOX_APPLIED_DAYS``/``EVENT_INBOX_PROBLEM_DAYS`` reach the job; what it
    deleted is in its result, and an idle run still reports no work."""
    app = App(make_settings(event_inbox_applied_days="2", event_inbox_problem_days="3"))
    try:
        add_row(app, received=days_ago(2.5), applied=days_ago(2.5))
        add_row(app, received=days_ago(2.5), problem="ValueError: x")
        add_row(app, received=days_ago(3.5), problem="ValueError: x")
        assert JOBS["events"](app, NOW) == {
            "bodies": 0,
            "problems": 0,
            "pruned": {"applied": 1, "problems": 1},
        }
        assert [problem for _, problem, _ in inbox_state(app)] == ["ValueError: x"]
        assert JOBS["events"](app, NOW) == {"bodies": 0, "problems": 0}
        assert count(app, EventInbox) == 1
    finally:
        app.close()
