"""Sixty days of hourly ticks for one subscriber: the sequence in order, each step at the
expected local hour across the end of summer time, then the rotation, then nothing after
an unsubscribe - not even the email that was already queued."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from newsletter.app import App
from newsletter.jobs import JOBS
from newsletter.models import Delivery, DeliveryKind, Enrollment, Subscriber
from newsletter.settings import Settings
from newsletter.subscriptions import SubscribeRequest, confirm, subscribe, unsubscribe_email
from newsletter.tokens import make_confirm_token
from tests.mailbox import read_outbox

BERLIN = ZoneInfo("Europe/Berlin")
SIGNUP = datetime(2026, 10, 10, 12, 30, tzinfo=UTC)  # 14:30 CEST; CET from 25 October
CONFIRMED = SIGNUP + timedelta(minutes=20)
SEQUENCE = "back-pain-basics"


def tick(app: App, now: datetime, *, only: tuple[str, ...] = ()) -> None:
    for name, job in JOBS.items():
        if not only or name in only:
            job(app, now)


def sent_drips(app: App) -> list[tuple[str, datetime]]:
    """(item id, local send time) of every drip email found in the outbox, in send order."""
    with app.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(Delivery).where(Delivery.kind == "drip"))}
    found = []
    for message in read_outbox(app.settings.effective_outbox_dir):
        delivery = rows.get(int(message["X-Newsletter-Delivery"]))
        if delivery is not None:
            assert delivery.sent_at is not None
            found.append((delivery.item_id, delivery.sent_at.astimezone(BERLIN)))
    return sorted(found, key=lambda pair: pair[1])


def expected_schedule(app: App, rotations: int) -> list[tuple[str, datetime]]:
    """Worked out by hand from the sequence file: whole-day delays, window 08:00-11:00."""
    sequence = app.library.sequence(SEQUENCE)
    assert (sequence.send_window.start, sequence.send_window.end) == (time(8), time(11))
    assert all(step.after.seconds == 0 for step in sequence.steps)
    assert sequence.then is not None
    first_tick = datetime(2026, 10, 10, 13, 0, tzinfo=UTC)  # first hourly tick after confirm
    schedule = [(sequence.steps[0].item_id, first_tick.astimezone(BERLIN))]
    # 15:00 local + delay is after the window: the window of the next day.
    day: date = first_tick.astimezone(BERLIN).date() + sequence.steps[1].after + timedelta(1)
    # Example items are never sent: the next item goes out in their slot (its own delay
    # is not added on top).
    examples = {i.id for i in app.library.items() if i.example}
    open_slot = False
    for index, step in enumerate(sequence.steps[1:]):
        if index and not open_slot:
            day += step.after
        open_slot = step.item_id in examples
        if not open_slot:
            schedule.append((step.item_id, datetime.combine(day, time(8), tzinfo=BERLIN)))
    in_sequence = {step.item_id for step in sequence.steps}
    pools = {
        kind: sorted(
            i.id for i in app.library.items() if i.kind == kind and i.id not in in_sequence
        )
        for kind in sequence.then.kinds
    }
    kinds = list(sequence.then.kinds)
    turn = (kinds.index(sequence.steps[-1].item_id.split("/")[0]) + 1) % len(kinds)
    produced = 0
    while produced < rotations:
        while not pools[kinds[turn % len(kinds)]]:
            turn += 1
        item = pools[kinds[turn % len(kinds)]].pop(0)
        turn += 1
        if not open_slot:
            day += sequence.then.every
        open_slot = item in examples
        if not open_slot:
            schedule.append((item, datetime.combine(day, time(8), tzinfo=BERLIN)))
            produced += 1
    return schedule


def test_sixty_days_of_ticks_follow_the_sequence_then_rotate_then_stop(
    make_settings: Callable[..., Settings],
) -> None:
    app = App(make_settings())
    try:
        subscribe(
            app,
            SubscribeRequest(email="dora@example.org", first_name="Dora", timezone="Europe/Berlin"),
            now=SIGNUP,
        )
        with app.sessions() as session:
            public_id = session.scalars(select(Subscriber.public_id)).one()
        token = make_confirm_token(public_id, keys=app.settings.secret_keys, now=SIGNUP)
        confirm(app, token, ip="203.0.113.9", now=CONFIRMED)

        expected = expected_schedule(app, rotations=5)
        *delivered, queued_then_unsubscribed = expected
        unsubscribe_at = queued_then_unsubscribed[1].astimezone(UTC)
        now = datetime(2026, 10, 10, 13, 0, tzinfo=UTC)
        while now < unsubscribe_at:
            tick(app, now)
            now += timedelta(hours=1)
        # The next rotation item is planned (queued) at 08:00, then the subscriber leaves
        # before the deliver job runs.
        tick(app, now, only=("recover-leases", "plan-drips"))
        with app.sessions() as session:
            queued = session.scalars(
                select(Delivery).where(Delivery.status == "queued", Delivery.kind == "drip")
            ).one()
        assert queued.item_id == queued_then_unsubscribed[0]
        unsubscribe_email(app, "dora@example.org", now=now)
        tick(app, now)
        end = SIGNUP + timedelta(days=60)
        while now < end:
            now += timedelta(hours=1)
            tick(app, now)

        assert sent_drips(app) == delivered
        assert [local.hour for _, local in delivered[1:]] == [8] * (len(delivered) - 1)
        offsets = {local.utcoffset() for _, local in delivered}
        assert offsets == {timedelta(hours=2), timedelta(hours=1)}  # both sides of the change
        with app.sessions() as session:
            skipped = session.get(Delivery, queued.id)
            enrollment = session.scalars(select(Enrollment)).one()
            kinds = list(session.scalars(select(Delivery.kind).order_by(Delivery.id)))
        assert skipped is not None
        assert skipped.status == "skipped"
        assert enrollment.status == "stopped"
        assert kinds.count(DeliveryKind.CONFIRMATION.value) == 1
        assert len(read_outbox(app.settings.effective_outbox_dir)) == len(delivered) + 1
    finally:
        app.close()
