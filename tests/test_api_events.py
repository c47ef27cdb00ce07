"""POST /api/v1/events: idempotent custom events that end and start sequences (the
purchase-on-day-5 flow), and every bad input; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from newsletter.app import App
from newsletter.db import transaction
from newsletter.drip.planner import plan_drips
from newsletter.jobs import deliver
from newsletter.ledger import claim_batch
from newsletter.models import Delivery, Enrollment, Subscriber, SubscriberEvent
from newsletter.settings import Settings
from tests.api_support import Clock, bearer, keys_and_client
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.mailers import RecordingMailer

API = "/api/v1"
PRODUCT = "QL Release Ball"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def app(settings: Settings, mailer: RecordingMailer) -> Iterator[App]:
    application = App(settings, mailer=mailer)
    yield application
    application.close()


@pytest.fixture
def api(app: App, clock: Clock) -> tuple[TestClient, str, str]:
    return keys_and_client(app, clock)


def tick(app: App, clock: Clock, days: float) -> None:
    """One scheduler pass at NOW + days: plan, deliver, and plan again (advance)."""
    clock.now = NOW + timedelta(days=days)
    plan_drips(app, clock.now)
    deliver(app, clock.now)
    plan_drips(app, clock.now)


def sent_items(app: App, mailer: RecordingMailer) -> list[tuple[str, str]]:
    """(sequence, item) of every email handed to the mailer, in order."""
    ids = [m.delivery_id for m in mailer.sent]
    with app.sessions() as session:
        rows = dict(
            session.execute(
                select(Delivery.id, Enrollment.sequence + " " + Delivery.item_id)
                .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
                .where(Delivery.id.in_(ids))
            ).all()
        )
    return [tuple(rows[i].split(" ")) for i in ids]  # type: ignore[misc]


def table_counts(app: App) -> dict[str, int]:
    with app.sessions() as session:
        return {
            m.__tablename__: int(session.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Subscriber, Enrollment, Delivery, SubscriberEvent)
        }


def purchase(client: TestClient, key: str, event_id: str = "order-1001") -> Any:
    return client.post(
        f"{API}/events",
        headers=bearer(key),
        json={
            "email": "buyer@example.org",
            "name": "purchase",
            "id": event_id,
            "properties": {"product": PRODUCT, "total": 39.9},
        },
    )


def test_purchase_on_day_5_ends_basics_and_starts_the_first_week(
    api: tuple[TestClient, str, str], app: App, clock: Clock, mailer: RecordingMailer
) -> None:
    client, write, _read = api
    created = client.post(
        f"{API}/subscribers",
        headers=bearer(write),
        json={
            "email": "buyer@example.org",
            "first_name": "Bea",
            "timezone": "UTC",
            "confirmed": True,
            "consent": {"source": "checkout", "text": "Send me tips"},
        },
    )
    assert created.status_code == 201, created.text
    tick(app, clock, 0)
    tick(app, clock, 2)
    assert sent_items(app, mailer) == [
        ("back-pain-basics", "system/welcome"),
        ("back-pain-basics", "tips/meet-your-ql"),
    ]
    # Day 5 in the window: the planner queues the next step; the purchase arrives before
    # any worker claims it.
    clock.now = NOW + timedelta(days=5)
    plan_drips(app, clock.now)
    with app.sessions() as session:
        queued = session.execute(select(Delivery.item_id, Delivery.status)).all()
    assert ("tips/gentle-pressure", "queued") in queued

    answer = purchase(client, write)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "event": {"id": "order-1001", "name": "purchase", "email": "buyer@example.org"},
        "duplicate": False,
        "enrolled": ["first-week-with-your-tool"],
        "exited": ["back-pain-basics"],
    }
    tick(app, clock, 5)
    first = mailer.sent[-1]
    assert first.subject == f"Your {PRODUCT}: your first week"
    assert f"Thank you for buying the {PRODUCT}!" in " ".join(first.text.split())
    assert PRODUCT in first.html

    before = table_counts(app)
    again = purchase(client, write)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert (again.json()["enrolled"], again.json()["exited"]) == ([], [])
    assert table_counts(app) == before

    for day in range(6, 30):
        tick(app, clock, day)
    assert sent_items(app, mailer) == [
        ("back-pain-basics", "system/welcome"),
        ("back-pain-basics", "tips/meet-your-ql"),
        ("first-week-with-your-tool", "system/purchase-welcome"),
        ("first-week-with-your-tool", "tutorials/first-session"),
        ("first-week-with-your-tool", "tutorials/at-your-desk"),
        ("first-week-with-your-tool", "tutorials/glute-routine"),
        ("first-week-with-your-tool", "tutorials/ql-release"),
    ]
    with app.sessions() as session:
        states = dict(session.execute(select(Enrollment.sequence, Enrollment.status)).all())
        skipped = session.execute(
            select(Delivery.item_id, Delivery.status, Delivery.error).where(
                Delivery.item_id == "tips/gentle-pressure"
            )
        ).one()
        stored = session.scalars(select(Enrollment.event).where(Enrollment.event.is_not(None)))
        event = stored.one()
    assert states == {"back-pain-basics": "exited", "first-week-with-your-tool": "done"}
    assert skipped.status == "skipped"
    assert event == {
        "name": "purchase",
        "id": "order-1001",
        "properties": {"product": PRODUCT, "total": 39.9},
    }


def test_an_exit_committed_before_the_claim_stops_the_step(app: App) -> None:
    """The claim re-checks the enrollment: a queued step of an exited enrollment is
    skipped even when the exit did not touch the ledger row itself."""
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, "a@example.org")
        enrollment = Enrollment(
            subscriber_id=subscriber.id,
            sequence="back-pain-basics",
            status="active",
            position=1,
            last_item_id="tips/meet-your-ql",
            created_at=NOW,
        )
        session.add(enrollment)
        session.flush()
        session.add(
            Delivery(
                key=f"drip:{enrollment.id}:tips/meet-your-ql",
                kind="drip",
                subscriber_id=subscriber.id,
                item_id="tips/meet-your-ql",
                enrollment_id=enrollment.id,
                step=1,
                status="queued",
                attempts=0,
                due_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    with transaction(app.sessions) as session:
        session.execute(update(Enrollment).values(status="exited"))
    with transaction(app.sessions) as session:
        claimed = claim_batch(session, worker="w", limit=10, now=NOW, lease=timedelta(minutes=5))
    assert claimed == []
    with app.sessions() as session:
        assert session.scalars(select(Delivery.status)).one() == "skipped"


def test_an_event_for_a_pending_subscriber_is_kept_but_enrolls_nobody(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "buyer@example.org", status="pending")
    answer = purchase(client, write)
    assert answer.status_code == 200
    assert (answer.json()["enrolled"], answer.json()["exited"]) == ([], [])
    assert table_counts(app)["subscriber_events"] == 1
    assert table_counts(app)["enrollments"] == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "nobody@example.org", "name": "purchase", "id": "o-1"}, 404, "not_found"),
        ({"email": "buyer@example.org", "name": "Purchase!", "id": "o-1"}, 422, "invalid_event"),
        ({"email": "buyer@example.org", "name": "purchase"}, 422, "invalid_request"),
        ({"email": "buyer@example.org", "name": "purchase", "id": ""}, 422, "invalid_request"),
        ({"email": "nope", "name": "purchase", "id": "o-1"}, 422, "invalid_email"),
        (
            {"email": "buyer@example.org", "name": "purchase", "id": "o-1", "extra": 1},
            422,
            "invalid_request",
        ),
        (
            {
                "email": "buyer@example.org",
                "name": "purchase",
                "id": "o-1",
                "properties": {"product": "x" * 501},
            },
            422,
            "invalid_attributes",
        ),
        (
            {
                "email": "buyer@example.org",
                "name": "purchase",
                "id": "o-1",
                "properties": {f"p{n}": "x" * 300 for n in range(40)},
            },
            422,
            "invalid_attributes",
        ),
        (
            {
                "email": "buyer@example.org",
                "name": "purchase",
                "id": "o-1",
                "properties": {"items": [1, 2]},
            },
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_events_are_refused_and_write_nothing(
    api: tuple[TestClient, str, str], app: App, body: dict[str, Any], status: int, code: str
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "buyer@example.org")
    before = table_counts(app)
    response = client.post(f"{API}/events", headers=bearer(write), json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert table_counts(app) == before


def test_an_event_id_reused_for_another_event_is_a_conflict(
    api: tuple[TestClient, str, str], app: App
) -> None:
    client, write, _read = api
    with transaction(app.sessions) as session:
        add_subscriber(session, "buyer@example.org")
        add_subscriber(session, "other@example.org")
    assert purchase(client, write).status_code == 200
    before = table_counts(app)
    response = client.post(
        f"{API}/events",
        headers=bearer(write),
        json={"email": "other@example.org", "name": "purchase", "id": "order-1001"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "event_id_reused"
    assert table_counts(app) == before
