"""Storing SendGrid events once and acting on them: suppression, soft bounces, reconciling.

Also home of the small factories (``make_event``, ``add_subscriber``, ``add_delivery``)
that the webhook and stats tests import.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.db import transaction
from newsletter.events.parsing import parse_batch
from newsletter.events.store import IngestReport, ingest
from newsletter.jobs import JOBS
from newsletter.ledger import NewDelivery, enqueue
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    ProviderEvent,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from tests import factories
from tests.conftest import NOW

T0 = NOW - timedelta(days=1)


def make_event(
    event: str,
    email: str,
    at: datetime,
    *,
    message: str = "msg1",
    delivery_id: int | str | None = None,
    sg_event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A SendGrid-shaped event; the default ``sg_event_id`` is derived from its content."""
    body: dict[str, Any] = {
        "email": email,
        "event": event,
        "timestamp": int(at.timestamp()),
        "sg_message_id": f"{message}.filterdrecv-1-2-3",
        "smtp-id": f"<{message}@ismtpd.sendgrid.net>",
        **extra,
    }
    if delivery_id is not None:
        body["delivery_id"] = str(delivery_id)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:22]
    body["sg_event_id"] = sg_event_id or digest
    return body


def post(app: App, events: Sequence[dict[str, Any]], *, now: datetime = NOW) -> IngestReport:
    """What the route does after the signature check."""
    return ingest(app, parse_batch(json.dumps(list(events)).encode()), now=now)


def add_subscriber(
    app: App,
    email: str,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    confirmed_at: datetime | None = NOW - timedelta(days=30),
) -> int:
    with transaction(app.sessions) as session:
        subscriber = factories.add_subscriber(
            session,
            email,
            timezone="Europe/Berlin",
            status=status.value,
            created_at=NOW - timedelta(days=60),
            updated_at=NOW - timedelta(days=60),
            confirmed_at=confirmed_at,
        )
        return subscriber.id


def add_delivery(
    app: App,
    subscriber_id: int | None,
    *,
    status: DeliveryStatus = DeliveryStatus.SENT,
    kind: DeliveryKind = DeliveryKind.DRIP,
    item_id: str = "tips/meet-your-ql",
    key: str | None = None,
    campaign_id: int | None = None,
    enrollment_id: int | None = None,
    step: int | None = None,
    sent_at: datetime | None = None,
    attempts: int = 1,
) -> int:
    with transaction(app.sessions) as session:
        row = Delivery(
            key=key or f"test:{subscriber_id}:{item_id}:{status.value}:{step}:{campaign_id}",
            kind=kind.value,
            subscriber_id=subscriber_id,
            item_id=item_id,
            campaign_id=campaign_id,
            enrollment_id=enrollment_id,
            step=step,
            status=status.value,
            attempts=attempts,
            due_at=T0,
            created_at=T0,
            updated_at=T0,
            sent_at=sent_at if sent_at or status is not DeliveryStatus.SENT else T0,
        )
        session.add(row)
        session.flush()
        return row.id


def status_of(app: App, email: str) -> tuple[str, int]:
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        return subscriber.status, subscriber.soft_bounces


def suppression(app: App, email: str) -> str | None:
    with app.sessions() as session:
        return session.scalar(
            select(Suppression.reason).where(Suppression.email_hash == email_hash(email))
        )


def count(app: App, model: type[Any], *where: Any) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def withdrawals(app: App, email: str) -> int:
    with app.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ConsentEvent)
                .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
                .where(Subscriber.email == email, ConsentEvent.kind == ConsentKind.WITHDRAWN.value)
            )
            or 0
        )


def _mixed_batch() -> list[dict[str, Any]]:
    return [
        make_event("bounce", "hard@example.org", T0, message="m1", type="bounce"),
        make_event("bounce", "soft@example.org", T0, message="m2", type="blocked"),
        make_event(
            "bounce", "soft@example.org", T0 + timedelta(hours=1), message="m3", type="blocked"
        ),
        make_event("spamreport", "spam@example.org", T0, message="m4"),
        make_event("delivered", "fine@example.org", T0, message="m5"),
        make_event("open", "fine@example.org", T0 + timedelta(minutes=5), message="m5"),
        make_event("open", "fine@example.org", T0 + timedelta(minutes=9), message="m5"),
    ]


def _fresh_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "sg_event_id": "retry-" + e["sg_event_id"]} for e in events]


def test_replays_have_exactly_one_effect(app: App) -> None:
    """A batch posted three times, then again with new sg_event_ids, acts once per event."""
    for email in ("hard", "soft", "spam", "fine"):
        add_subscriber(app, f"{email}@example.org")
    batch = _mixed_batch()
    reports = [post(app, batch) for _ in range(3)] + [post(app, _fresh_ids(batch))]

    assert [(r.stored, r.duplicates) for r in reports] == [(7, 0), (0, 7), (0, 7), (0, 7)]
    assert count(app, ProviderEvent) == 7
    assert status_of(app, "hard@example.org") == ("bounced", 0)
    assert status_of(app, "soft@example.org") == ("active", 2)
    assert status_of(app, "spam@example.org") == ("complained", 0)
    assert status_of(app, "fine@example.org") == ("active", 0)
    assert [withdrawals(app, f"{e}@example.org") for e in ("hard", "soft", "spam")] == [1, 0, 1]
    assert count(app, Suppression) == 2


def test_duplicates_inside_one_batch_are_stored_once(app: App) -> None:
    """The same event twice in one body (and once more with another id) is one row."""
    add_subscriber(app, "soft@example.org")
    blocked = make_event("bounce", "soft@example.org", T0, type="blocked")
    report = post(app, [blocked, blocked, {**blocked, "sg_event_id": "other"}])
    assert (report.received, report.stored, report.duplicates) == (3, 1, 2)
    assert status_of(app, "soft@example.org") == ("active", 1)


def test_concurrent_posts_of_one_batch_store_once(app: App) -> None:
    """Four workers posting the same batch at once: each event stored and acted on once."""
    for email in ("hard", "soft", "spam", "fine"):
        add_subscriber(app, f"{email}@example.org")
    batch = _mixed_batch()
    barrier = threading.Barrier(4)
    reports: list[IngestReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            reports.append(post(app, batch))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.stored for r in reports) == [0, 0, 0, 7]
    assert count(app, ProviderEvent) == 7
    assert status_of(app, "soft@example.org") == ("active", 2)
    assert withdrawals(app, "hard@example.org") == 1


def test_bounce_then_older_delivered_stays_suppressed_and_tick_sends_nothing(
    app: App, tmp_path: Path
) -> None:
    """A late ``delivered`` never lifts a bounce; the next deliver job skips the subscriber."""
    subscriber_id = add_subscriber(app, "late@example.org")
    post(app, [make_event("bounce", "late@example.org", T0 + timedelta(hours=2), type="bounce")])
    post(app, [make_event("delivered", "late@example.org", T0)])
    assert status_of(app, "late@example.org") == ("bounced", 0)
    assert suppression(app, "late@example.org") == "bounced"

    with transaction(app.sessions) as session:
        enqueue(
            session,
            [
                NewDelivery(
                    key="drip:late:1",
                    kind=DeliveryKind.DRIP,
                    item_id="tips/meet-your-ql",
                    due_at=NOW,
                    subscriber_id=subscriber_id,
                )
            ],
            now=NOW,
        )
    result = JOBS["deliver"](app, NOW + timedelta(minutes=1))
    assert result["sent"] == 0
    with app.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.key == "drip:late:1")).one()
    assert row.status == DeliveryStatus.SKIPPED.value
    outbox = tmp_path / "outbox"
    assert not outbox.exists() or list(outbox.iterdir()) == []


EVENT_SET = [
    make_event("delivered", "order@example.org", T0, message="a"),
    make_event("bounce", "order@example.org", T0 + timedelta(hours=1), message="b", type="blocked"),
    make_event("unsubscribe", "order@example.org", T0 + timedelta(hours=2), message="c"),
    make_event("bounce", "order@example.org", T0 + timedelta(hours=3), message="d", type="bounce"),
]


@pytest.mark.parametrize(
    "order", [pytest.param(p, id="-".join(map(str, p))) for p in permutations(range(4))][::5]
)
def test_arrival_order_does_not_matter(app: App, order: tuple[int, ...]) -> None:
    """Whatever order the events arrive in, one per post, the end state is the same."""
    add_subscriber(app, "order@example.org")
    for index in order:
        post(app, [EVENT_SET[index]])
    assert status_of(app, "order@example.org") == ("bounced", 1)
    assert suppression(app, "order@example.org") == "bounced"


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([("bounce", {"type": "bounce"})], "bounced", id="hard-bounce"),
        pytest.param([("bounce", {})], "bounced", id="bounce-without-type"),
        pytest.param([("bounce", {"type": "blocked"})] * 2, "active", id="two-blocks"),
        pytest.param([("bounce", {"type": "blocked"})] * 3, "bounced", id="three-blocks"),
        pytest.param([("deferred", {})] * 5, "active", id="deferred-never-counts"),
        pytest.param([("dropped", {"reason": "Bounced Address"})], "bounced", id="dropped-bounced"),
        pytest.param([("dropped", {"reason": "Invalid"})], "bounced", id="dropped-invalid"),
        pytest.param(
            [("dropped", {"reason": "Unsubscribed Address"})], "unsubscribed", id="dropped-unsub"
        ),
        pytest.param(
            [("dropped", {"reason": "Spam Reporting Address"})], "complained", id="dropped-spam"
        ),
        pytest.param(
            [("dropped", {"reason": "Recipient List over Package Quota"})],
            "active",
            id="dropped-quota",
        ),
        pytest.param([("spamreport", {})], "complained", id="spamreport"),
        pytest.param([("unsubscribe", {})], "unsubscribed", id="unsubscribe"),
        pytest.param([("group_unsubscribe", {"asm_group_id": 1})], "unsubscribed", id="group"),
        pytest.param([("group_resubscribe", {"asm_group_id": 1})], "active", id="resubscribe"),
        pytest.param([("open", {}), ("click", {"url": "https://x"})], "active", id="engagement"),
        pytest.param([("spamreport", {}), ("bounce", {})], "complained", id="complaint-wins"),
    ],
)
def test_event_effects(app: App, events: list[tuple[str, dict[str, Any]]], expected: str) -> None:
    """Each event kind moves the subscriber as the policy says, one post per event."""
    add_subscriber(app, "who@example.org")
    for index, (name, extra) in enumerate(events):
        at = T0 + timedelta(minutes=index)
        post(app, [make_event(name, "who@example.org", at, message=f"m{index}", **extra)])
    assert status_of(app, "who@example.org")[0] == expected
    assert (suppression(app, "who@example.org") is not None) is (expected != "active")


def test_unknown_address_is_suppressed_by_hash(app: App) -> None:
    """An address with no subscriber row (forgotten, seed) is suppressed all the same."""
    post(app, [make_event("spamreport", "Gone@Example.org", T0)])
    assert suppression(app, "gone@example.org") == "complained"
    assert count(app, Subscriber) == 0


def test_forgotten_subscriber_stays_blocked(app: App) -> None:
    """After ``forget`` a bounce upgrades the hashed 'forgotten' suppression to 'bounced'."""
    from newsletter.subscriptions import forget

    add_subscriber(app, "erased@example.org")
    forget(app, "erased@example.org", now=NOW)
    assert suppression(app, "erased@example.org") == "forgotten"
    post(app, [make_event("bounce", "erased@example.org", T0, type="bounce")])
    assert suppression(app, "erased@example.org") == "bounced"


def test_unsubscribe_before_latest_confirmation_is_history(app: App) -> None:
    """An unsubscribe that predates a re-confirmation does not undo the new opt-in."""
    add_subscriber(app, "back@example.org", confirmed_at=T0)
    post(app, [make_event("unsubscribe", "back@example.org", T0 - timedelta(days=3))])
    assert status_of(app, "back@example.org")[0] == "active"
    post(app, [make_event("unsubscribe", "back@example.org", T0 + timedelta(days=1))])
    assert status_of(app, "back@example.org")[0] == "unsubscribed"


def test_unsubscribed_then_bounce_raises_the_reason(app: App) -> None:
    """Unsubscribed then hard bounce: status and suppression reason become 'bounced'."""
    add_subscriber(app, "up@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    with transaction(app.sessions) as session:
        session.add(
            Suppression(
                email_hash=email_hash("up@example.org"), reason="unsubscribed", created_at=T0
            )
        )
    post(app, [make_event("bounce", "up@example.org", T0)])
    assert status_of(app, "up@example.org")[0] == "bounced"
    assert suppression(app, "up@example.org") == "bounced"


def test_pending_subscriber_bounce_skips_their_queued_confirmation(app: App) -> None:
    """A bounce stops mail already queued for the subscriber (withdraw skips it)."""
    subscriber_id = add_subscriber(
        app, "new@example.org", status=SubscriberStatus.PENDING, confirmed_at=None
    )
    queued = add_delivery(app, subscriber_id, status=DeliveryStatus.QUEUED, attempts=0)
    post(app, [make_event("bounce", "new@example.org", T0)])
    assert status_of(app, "new@example.org")[0] == "bounced"
    with app.sessions() as session:
        assert session.get_one(Delivery, queued).status == DeliveryStatus.SKIPPED.value


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(DeliveryStatus.UNKNOWN, DeliveryStatus.SENT, id="unknown"),
        pytest.param(DeliveryStatus.SENDING, DeliveryStatus.SENT, id="sending"),
        pytest.param(DeliveryStatus.FAILED, DeliveryStatus.SENT, id="failed"),
        pytest.param(DeliveryStatus.LEASED, DeliveryStatus.LEASED, id="leased-left-to-worker"),
        pytest.param(DeliveryStatus.SKIPPED, DeliveryStatus.SKIPPED, id="skipped"),
        pytest.param(DeliveryStatus.SENT, DeliveryStatus.SENT, id="sent"),
    ],
)
def test_events_reconcile_deliveries(
    app: App, before: DeliveryStatus, after: DeliveryStatus
) -> None:
    """An event naming a delivery settles it as sent, keeping the provider message id."""
    subscriber_id = add_subscriber(app, "rec@example.org")
    delivery_id = add_delivery(app, subscriber_id, status=before)
    report = post(
        app,
        [
            make_event(
                "delivered",
                "rec@example.org",
                T0 + timedelta(seconds=5),
                message="XMSG",
                delivery_id=delivery_id,
            ),
            make_event("processed", "rec@example.org", T0, message="XMSG", delivery_id=delivery_id),
        ],
    )
    with app.sessions() as session:
        row = session.get_one(Delivery, delivery_id)
    assert row.status == after.value
    assert report.reconciled == (1 if after != before else 0)
    if after != before:
        assert row.provider_message_id == "XMSG"
        assert row.sent_at == T0  # the earliest event
        assert row.error == f"reconciled from SendGrid events; was {before.value}"


def test_unknown_delivery_is_reconciled_and_never_resent(app: App, tmp_path: Path) -> None:
    """Unknown + delivered event -> sent; the deliver job then has nothing to send."""
    subscriber_id = add_subscriber(app, "once@example.org")
    delivery_id = add_delivery(app, subscriber_id, status=DeliveryStatus.UNKNOWN)
    post(
        app,
        [make_event("delivered", "once@example.org", T0, message="SGID", delivery_id=delivery_id)],
    )
    result = JOBS["deliver"](app, NOW)
    assert result["claimed"] == 0
    with app.sessions() as session:
        row = session.get_one(Delivery, delivery_id)
    assert (row.status, row.provider_message_id, row.attempts) == ("sent", "SGID", 1)
    outbox = tmp_path / "outbox"
    assert not outbox.exists() or list(outbox.iterdir()) == []


def test_one_batch_reconciles_many_deliveries(app: App) -> None:
    """Several deliveries settled by one batch (one executemany), others left alone."""
    subscriber_id = add_subscriber(app, "many@example.org")
    ids = [
        add_delivery(app, subscriber_id, status=status, key=f"many:{n}")
        for n, status in enumerate(
            [
                DeliveryStatus.UNKNOWN,
                DeliveryStatus.SENDING,
                DeliveryStatus.UNKNOWN,
                DeliveryStatus.SKIPPED,
            ]
        )
    ]
    batch = [
        make_event("delivered", "many@example.org", T0, message=f"M{n}", delivery_id=d)
        for n, d in enumerate(ids)
    ]
    batch.append(make_event("open", "many@example.org", T0, message="M9", delivery_id=999999))
    assert post(app, batch).reconciled == 3
    with app.sessions() as session:
        rows = [session.get_one(Delivery, d) for d in ids]
    assert [(r.status, r.provider_message_id) for r in rows] == [
        ("sent", "M0"),
        ("sent", "M1"),
        ("sent", "M2"),
        ("skipped", None),
    ]


def test_replayed_batch_still_reconciles_a_row_that_went_unknown_later(app: App) -> None:
    """Events stored while the row was ``sending`` still settle it when SendGrid retries."""
    subscriber_id = add_subscriber(app, "race@example.org")
    delivery_id = add_delivery(app, subscriber_id, status=DeliveryStatus.LEASED)
    batch = [make_event("processed", "race@example.org", T0, delivery_id=delivery_id)]
    post(app, batch)
    with transaction(app.sessions) as session:
        session.get_one(Delivery, delivery_id).status = DeliveryStatus.UNKNOWN.value
    report = post(app, batch)
    assert (report.stored, report.reconciled) == (0, 1)


def test_stored_payload_keeps_no_personal_data(app: App) -> None:
    """Address, IP and user agent stay out of the stored payload; reasons are blanked."""
    post(
        app,
        [
            make_event(
                "bounce",
                "Private@Example.org",
                T0,
                reason="550 5.1.1 <private@example.org>: user unknown",
                ip="192.0.2.1",
                useragent="Mozilla",
                category=["tips"],
            )
        ],
    )
    with app.sessions() as session:
        row = session.scalars(select(ProviderEvent)).one()
    assert row.email_hash == email_hash("private@example.org")
    assert row.payload["reason"] == "550 5.1.1 <<redacted>>: user unknown"
    assert {"email", "ip", "useragent"}.isdisjoint(row.payload)
    assert row.payload["category"] == ["tips"]


def test_unusable_elements_are_ignored_and_counted(app: App) -> None:
    """Elements that are not events are skipped; the rest of the batch is stored."""
    good = make_event("delivered", "fine@example.org", T0)
    report = post(app, [good, "text", {"event": "open"}, {"timestamp": 1764000000}])
    assert (report.received, report.stored, report.ignored) == (4, 1, 3)


def test_stored_rows_carry_the_event_fields(app: App) -> None:
    """Each row has the event name, time, delivery id and message id as columns."""
    post(app, [make_event("open", "f@example.org", T0, message="M9", delivery_id="77")])
    with app.sessions() as session:
        row = session.scalars(select(ProviderEvent)).one()
    assert (row.event, row.occurred_at, row.delivery_id, row.received_at) == ("open", T0, 77, NOW)
    assert row.sg_message_id == "M9.filterdrecv-1-2-3"
    assert row.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    "body",
    [
        '[{"event":"open","timestamp":1764000000,"sg_event_id":"a\\u0000b","x":"\\u0000"}]',
        '[{"event":"bounce","timestamp":1764000000,"email":"a\\u0000@x.org","\\u0000":1}]',
        '[{"event":"open","timestamp":1764000000,"sg_event_id":"\\ud800","x":"\\udc00"}]',
        '[{"event":"bounce","timestamp":1764000000,"email":"\\ud800@x.org"}]',
        '[{"event":"open","timestamp":1764000000,"x":NaN,"y":-Infinity,"z":1e400}]',
    ],
    ids=["nul", "nul-email-and-key", "lone-surrogate", "surrogate-email", "non-finite"],
)
def test_text_postgresql_cannot_store_is_made_storable(app: App, body: str) -> None:
    """NUL, lone surrogates and NaN in a (verified) body are stored, never a 5xx."""
    report = ingest(app, parse_batch(body.encode()), now=NOW)
    assert (report.stored, count(app, ProviderEvent)) == (1, 1)


def test_stored_events_read_back_as_written_and_in_the_orm_s_format(app: App) -> None:
    """SQLite's insert goes to the driver with the columns' own bind processing: the rows
    read back with every value as parsed (aware UTC times, the scrubbed payload), and in
    the very text an ORM insert stores (so comparisons and ordering in SQL agree)."""
    from sqlalchemy import text

    body = json.dumps(
        [
            {
                "event": "click",
                "email": "Reader@Example.org",
                "timestamp": 1795000000,
                "sg_event_id": "raw-1",
                "sg_message_id": "MSGRAW.filter",
                "delivery_id": "7",
                "url": "https://shop.example/x",
                "category": ["a", "ü"],
                "nested": {"note": "for reader@example.org", "n": 1.5},
            }
        ]
    ).encode()
    (parsed,) = parse_batch(body).events
    at = NOW + timedelta(microseconds=123456)
    report = ingest(app, parse_batch(body), now=at)
    assert report.stored == 1
    with app.sessions() as session:
        row = session.scalars(select(ProviderEvent)).one()
        assert (row.sg_event_id, row.logical_key, row.event, row.email_hash) == (
            "raw-1",
            parsed.logical_key,
            "click",
            parsed.email_hash,
        )
        assert row.occurred_at == parsed.occurred_at
        assert row.received_at == at
        assert row.delivery_id == 7
        assert row.sg_message_id == "MSGRAW.filter"
        assert row.payload == dict(parsed.payload)
    with transaction(app.sessions) as writing:
        writing.add(
            ProviderEvent(
                sg_event_id="orm-1",
                logical_key="orm",
                event="click",
                occurred_at=parsed.occurred_at,
                payload=dict(parsed.payload),
                received_at=at,
            )
        )
    with app.sessions() as session:
        stored = session.execute(
            text(
                "SELECT sg_event_id, occurred_at, received_at, payload FROM provider_events"
                " ORDER BY sg_event_id"
            )
        ).all()
    orm, raw = stored
    assert raw[1:] == orm[1:]
