"""SEND_RATE is honoured by delivery: the dispatcher waits for capacity before sending."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from newsletter.app import App
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries


class FakeTime:
    """A wall clock that moves only when the dispatcher sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def seed(app: App, count: int) -> None:
    with transaction(app.sessions) as session:
        subscriber_ids = add_subscribers(session, count)
        queue_deliveries(session, subscriber_ids, item_id="tips/walking")


def test_dispatch_paces_sends_to_the_configured_rate(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeTime()
    app = App(make_settings(send_rate="20", batch_size="100"), clock=fake.clock, sleep=fake.sleep)
    seed(app, 100)
    report = deliver_due(app, now=NOW)
    assert report.outcomes == {"sent": 100}
    # a full bucket holds one second (20 messages); the other 80 need 4 more seconds
    assert sum(fake.slept) == 4.0
    app.close()


def test_no_cap_means_no_waiting(make_settings: Callable[..., Settings]) -> None:
    fake = FakeTime()
    app = App(make_settings(), clock=fake.clock, sleep=fake.sleep)
    seed(app, 30)
    deliver_due(app, now=NOW)
    assert fake.slept == []
    app.close()
