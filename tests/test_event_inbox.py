"""The SendGrid event inbox: the webhook answers once the body is committed; the drain
applies it exactly once, survives a crash, shares nothing between two drains, and keeps
a body it cannot apply aside without blocking the others."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from newsletter.api_keys import create_key
from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.events import inbox
from newsletter.events.inbox import accept, apply_pending, drain, store_body
from newsletter.events.parsing import ParsedEvent
from newsletter.events.store import IngestReport
from newsletter.jobs import JOBS
from newsletter.logs import did_something
from newsletter.models import (
    DeliveryKind,
    EventInbox,
    ProviderEvent,
    Subscriber,
    Suppression,
)
from newsletter.settings import load_settings
from tests.api_support import bearer
from tests.cli_output import after_context
from tests.conftest import NOW
from tests.test_events_store import T0, add_delivery, add_subscriber, make_event
from tests.test_webhook_signature import Webhook
from tests.test_webhook_signature import make_webhook as make_webhook
from tests.test_webhook_signature import webhook as webhook

SEQ = "back-pain-basics"


def body_of(events: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps(list(events)).encode()


def count(app: App, model: type[Any]) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def inbox_state(app: App) -> list[tuple[bool, str | None, dict[str, int] | None]]:
    """(applied, problem, report) of every inbox row, oldest first."""
    with app.sessions() as session:
        rows = session.execute(
            select(EventInbox.applied_at, EventInbox.problem, EventInbox.report).order_by(
                EventInbox.id
            )
        ).all()
    return [(r.applied_at is not None, r.problem, r.report) for r in rows]


def welcome_delivery(app: App, email: str) -> int:
    """A sent welcome of the sequence, so stats count events that name it."""
    subscriber = add_subscriber(app, email)
    return add_delivery(
        app,
        subscriber,
        kind=DeliveryKind.DRIP,
        item_id="system/welcome",
        step=0,
        enrollment_id=None,
        key=f"test:welcome:{email}",
    )


def welcome_stats(client: Any, read: str) -> dict[str, Any]:
    response = client.get("/api/v1/stats", headers=bearer(read))
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["sequences"] if r["item"] == "system/welcome"]
    return {k: rows[0][k] for k in ("sent", "delivered", "spam_reports")}


def status_of(client: Any, read: str, email: str) -> str:
    response = client.get(f"/api/v1/subscribers/{email}", headers=bearer(read))
    assert response.status_code == 200, response.text
    return str(response.json()["subscriber"]["status"])


def test_stats_api_and_suppression_see_the_events_once_applied(
    make_webhook: Callable[..., Webhook],
) -> None:
    """A body in the inbox changes nothing until the drain applies it; then the stats, the
    API's subscriber and the suppression list all show its events. Over HTTP the drain has
    run by the time the request's cycle ends."""
    hook = make_webhook()
    app = hook.app
    _view, read = create_key(app, "dashboard", scope="read", now=NOW)
    first = welcome_delivery(app, "ann@example.org")
    events = [
        make_event("delivered", "ann@example.org", T0, delivery_id=first),
        make_event("spamreport", "ann@example.org", T0, delivery_id=first),
    ]
    accept(app, body_of(events), now=NOW)  # in the inbox, not applied
    before = welcome_stats(hook.client, read)
    assert before == {"sent": 1, "delivered": 0, "spam_reports": 0}
    assert status_of(hook.client, read, "ann@example.org") == "active"
    assert count(app, Suppression) == 0

    report = drain(app, now=NOW)

    assert (report.bodies, report.problems, report.counts["stored"]) == (1, 0, 2)
    assert welcome_stats(hook.client, read) == {"sent": 1, "delivered": 1, "spam_reports": 1}
    assert status_of(hook.client, read, "ann@example.org") == "complained"
    assert count(app, Suppression) == 1

    # Over HTTP: answered "accepted", applied before the test client returns.
    second = welcome_delivery(app, "bob@example.org")
    response = hook.post([make_event("delivered", "bob@example.org", T0, delivery_id=second)])
    assert response.json() == {"status": "accepted"}
    assert welcome_stats(hook.client, read)["delivered"] == 2
    assert [applied for applied, _, _ in inbox_state(app)] == [True, True]


def test_an_applied_body_is_emptied_and_keeps_its_counts(app: App) -> None:
    """The raw body (addresses, IPs) does not outlive its application; the counts stay."""
    add_subscriber(app, "soft@example.org")
    accept(
        app,
        body_of([make_event("bounce", "soft@example.org", T0, type="blocked"), {"event": "x"}, 7]),
        now=NOW,
    )
    drain(app, now=NOW)
    with app.sessions() as session:
        row = session.scalars(select(EventInbox)).one()
    assert (row.body, row.applied_at, row.problem) == (b"", NOW, None)
    assert row.report == {
        "received": 3,
        "stored": 1,
        "duplicates": 0,
        "ignored": 2,
        "reconciled": 0,
        "suppressed": 0,  # one soft bounce: counted, not suppressed
    }


def test_the_body_is_committed_before_the_answer_even_when_the_drain_fails(
    make_webhook: Callable[..., Webhook], monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 means the body is in the database: with the drain failing (database trouble),
    the body is there, pending, and a later drain applies it."""
    hook = make_webhook()

    def down(*_args: Any, **_kwargs: Any) -> IngestReport:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(inbox, "store_events", down)
    response = hook.post([make_event("delivered", "a@example.org", T0)])
    assert response.status_code == 200
    assert inbox_state(hook.app) == [(False, None, None)]
    assert hook.count(ProviderEvent) == 0
    monkeypatch.undo()
    assert drain(hook.app, now=NOW).bodies == 1
    assert hook.count(ProviderEvent) == 1


def test_a_crash_before_the_commit_leaves_the_body_pending_and_the_redo_acts_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events, their effects and the applied mark commit together: a failure after the
    events were written (here: the connection lost before the commit) undoes all of it,
    and the next drain applies the body once."""
    add_subscriber(app, "soft@example.org")
    accept(app, body_of([make_event("bounce", "soft@example.org", T0, type="blocked")]), now=NOW)
    real = inbox.store_events

    def crash(session: Session, events: Sequence[ParsedEvent], *, now: Any) -> IngestReport:
        real(session, events, now=now)  # stored and acted on, not committed
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(inbox, "store_events", crash)
    with pytest.raises(OperationalError):
        drain(app, now=NOW)
    assert inbox_state(app) == [(False, None, None)]
    assert count(app, ProviderEvent) == 0
    monkeypatch.undo()

    assert drain(app, now=NOW).bodies == 1
    assert drain(app, now=NOW).bodies == 0
    with app.sessions() as session:
        soft = session.scalar(select(Subscriber.soft_bounces))
    assert (count(app, ProviderEvent), soft) == (1, 1)


@pytest.fixture
def applications(app: App, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the body of every application that reaches ``store_events``."""
    seen: list[bytes] = []
    real = inbox.store_events
    lock = threading.Lock()

    def recording(session: Session, events: Sequence[ParsedEvent], *, now: Any) -> IngestReport:
        with lock:
            seen.append(json.dumps(sorted(e.logical_key for e in events)).encode())
        return real(session, events, now=now)

    monkeypatch.setattr(inbox, "store_events", recording)
    return seen


def test_two_drains_at_once_apply_each_body_once(app: App, applications: list[bytes]) -> None:
    """Two drains started together over 12 bodies that share their subscribers and
    deliveries (in different orders): every body is applied exactly once, and neither
    drain fails (no deadlock between their row locks on PostgreSQL)."""
    people = [f"r{n}@example.org" for n in range(4)]
    deliveries = [welcome_delivery(app, email) for email in people]
    for n in range(12):
        order = people[n % 4 :] + people[: n % 4]
        accept(
            app,
            body_of(
                [
                    make_event(
                        "bounce",
                        email,
                        T0,
                        message=f"m{n}-{email}",
                        type="blocked",
                        delivery_id=deliveries[people.index(email)],
                    )
                    for email in (order if n % 2 else order[::-1])
                ]
            ),
            now=NOW,
        )
    reports: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            reports.append(drain(app, now=NOW).bodies)
        except Exception as exc:  # the assertion below names it
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(reports) == 12
    assert len(applications) == 12
    assert len(set(applications)) == 12
    assert [applied for applied, _, _ in inbox_state(app)] == [True] * 12
    assert count(app, ProviderEvent) == 48


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_drain_skips_a_body_another_drain_holds(app: App, applications: list[bytes]) -> None:
    """PostgreSQL: while one drain holds body 1 (uncommitted), another takes body 2 without
    waiting; once the first commits, nothing is left and nothing was applied twice."""
    accept(app, body_of([make_event("delivered", "a@example.org", T0)]), now=NOW)
    accept(app, body_of([make_event("delivered", "b@example.org", T0)]), now=NOW)
    with transaction(app.sessions) as held:
        first = apply_pending(held, now=NOW, limit=1)
        assert first.bodies == 1
        other = drain(app, now=NOW)  # would block here without SKIP LOCKED
        assert (other.bodies, other.problems) == (1, 0)
    assert drain(app, now=NOW).taken == 0
    assert len(applications) == 2
    assert [applied for applied, _, _ in inbox_state(app)] == [True, True]
    assert count(app, ProviderEvent) == 2


def test_a_body_that_cannot_be_applied_is_kept_aside_and_the_rest_go_on(app: App) -> None:
    """A stored body that is not an event batch (the route refuses these, but a body from
    an older version, or one the database refuses, gets here) is kept with its problem and
    skipped; the bodies before and after it are applied in the same pass."""
    with transaction(app.sessions) as session:
        store_body(session, body_of([make_event("delivered", "a@example.org", T0)]), now=NOW)
        store_body(session, b'{"event": "bounce"}', now=NOW)
        store_body(session, body_of([make_event("delivered", "b@example.org", T0)]), now=NOW)
    report = drain(app, now=NOW)
    assert (report.bodies, report.problems) == (2, 1)
    state = inbox_state(app)
    assert [(applied, problem) for applied, problem, _ in state] == [
        (True, None),
        (False, "EventPayloadError: the body must be a JSON array of SendGrid events"),
        (True, None),
    ]
    assert count(app, ProviderEvent) == 2
    assert drain(app, now=NOW).taken == 0  # skipped from now on, not retried in a loop
    with app.sessions() as session:
        kept = session.scalars(select(EventInbox.body).where(EventInbox.id == 2)).one()
    assert kept == b'{"event": "bounce"}'  # kept as received, to look at or retry


def test_the_cli_lists_kept_bodies_and_retries_one(
    cli_env: dict[str, Any],
) -> None:
    """``events inbox`` shows pending bodies and ones kept with a problem; ``--retry``
    makes a kept one pending again (the drain then meets the same problem)."""
    app = App(load_settings(cli_env))
    try:
        with transaction(app.sessions) as session:
            store_body(session, b"[1", now=NOW)
        drain(app, now=NOW)
        with transaction(app.sessions) as session:
            store_body(session, b"[]", now=NOW)
    finally:
        app.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["events", "inbox", "--format", "json"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()] if listed.stdout else []
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    assert [(r["id"], r["state"], r["bytes"], r["problem"]) for r in rows] == [
        (
            1,
            "problem",
            2,
            "EventPayloadError: the body is not valid JSON: Expecting ',' delimiter: "
            "line 1 column 3 (char 2)",
        ),
        (2, "pending", 2, ""),
    ]
    retried = runner.invoke(main, ["events", "inbox", "--retry", "1", "--retry", "9"], env=cli_env)
    assert retried.exit_code == 0, retried.output
    assert after_context(retried.stderr).splitlines()[0] == "1 of 2 bodies pending again"
    app = App(load_settings(cli_env))
    try:
        assert inbox_state(app)[0] == (False, None, None)
    finally:
        app.close()


def test_the_events_job_applies_what_the_web_process_left(app: App) -> None:
    """The worker's ``events`` job drains the inbox; an idle run reports no work."""
    add_subscriber(app, "gone@example.org")
    accept(app, body_of([make_event("spamreport", "gone@example.org", T0)]), now=NOW)
    result = JOBS["events"](app, NOW)
    assert result == {
        "bodies": 1,
        "problems": 0,
        "received": 1,
        "stored": 1,
        "duplicates": 0,
        "ignored": 0,
        "reconciled": 0,
        "suppressed": 1,
    }
    idle = JOBS["events"](app, NOW)
    assert idle == {"bodies": 0, "problems": 0}
    assert not did_something(idle)


def test_a_replayed_body_acts_once_through_the_inbox(app: App) -> None:
    """SendGrid's retries: the same body accepted three times is three inbox rows; the
    events are stored and acted on once, the other two rows count duplicates."""
    add_subscriber(app, "soft@example.org")
    body = body_of([make_event("bounce", "soft@example.org", T0, type="blocked")])
    for _ in range(3):
        accept(app, body, now=NOW)
    drain(app, now=NOW)
    assert [(r or {}).get("stored") for _, _, r in inbox_state(app)] == [1, 0, 0]
    with app.sessions() as session:
        assert session.scalar(select(Subscriber.soft_bounces)) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(b"[]", None, id="empty-array"),
        pytest.param(b' \r\n\t[{"a": 1}]\r\n', None, id="whitespace-around"),
        pytest.param(b"[1,]", None, id="array-shaped-not-json: left to the drain"),
        pytest.param(b" " * 100 + b"[1]", None, id="long-whitespace-parsed"),
        pytest.param(b" " * 100 + b"{}", "the body must be a JSON array", id="long-ws-object"),
        pytest.param(b"[1,", "the body is not valid JSON", id="unclosed"),
        pytest.param(b"1]", "the body is not valid JSON", id="unopened"),
        pytest.param(b'"[x]"', "the body must be a JSON array", id="string"),
        pytest.param(b"", "the body is not valid JSON", id="empty"),
    ],
)
def test_check_body_refuses_what_is_not_shaped_like_an_array(
    body: bytes, problem: str | None
) -> None:
    """The request's only look at the body: its first and last non-blank bytes."""
    if problem is None:
        inbox.check_body(body)
        return
    with pytest.raises(inbox.EventPayloadError) as caught:
        inbox.check_body(body)
    assert str(caught.value).startswith(problem)


def test_a_signed_array_that_does_not_parse_is_accepted_and_kept_aside(webhook: Webhook) -> None:
    """Shaped like an array, not JSON inside: answered 200 (SendGrid would only retry it),
    kept with its problem for the operator, nothing else stored."""
    body = b'[{"event": "bounce",}]'
    response = webhook.client.post(
        "/webhooks/sendgrid", content=body, headers=webhook.signer.headers(body, NOW)
    )
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    [(applied, problem, report)] = inbox_state(webhook.app)
    assert (applied, report) == (False, None)
    assert (problem or "").startswith("EventPayloadError: the body is not valid JSON: ")
    assert webhook.count(ProviderEvent) == 0


def test_a_drain_told_to_stop_ends_after_its_current_transaction(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutting down: the drain commits what it started and leaves the rest pending."""
    for n in range(10):
        accept(app, body_of([make_event("delivered", f"s{n}@example.org", T0)]), now=NOW)
    monkeypatch.setattr(inbox, "SQLITE_BODIES", 4)  # the rule holds for any size
    report = drain(app, now=NOW, stop=lambda: True)
    per_transaction = (
        inbox.POSTGRES_BODIES if app.engine.dialect.name == "postgresql" else inbox.SQLITE_BODIES
    )
    assert report.bodies == per_transaction
    assert [applied for applied, _, _ in inbox_state(app)].count(False) == 10 - per_transaction
    assert drain(app, now=NOW).bodies == 10 - per_transaction


def test_while_a_request_waits_the_drain_takes_one_body_per_transaction(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``busy`` (a webhook request waiting for the writer): one body per transaction, a
    pause between them."""
    for n in range(3):
        accept(app, body_of([make_event("delivered", f"w{n}@example.org", T0)]), now=NOW)
    monkeypatch.setattr(inbox, "SQLITE_BODIES", 8)
    monkeypatch.setattr(inbox, "POSTGRES_BODIES", 8)
    assert drain(app, now=NOW, busy=lambda: True, stop=lambda: True).bodies == 1
    pauses: list[int] = []
    report = drain(app, now=NOW, busy=lambda: True, pause=lambda: pauses.append(1))
    assert (report.bodies, len(pauses)) == (2, 2)
