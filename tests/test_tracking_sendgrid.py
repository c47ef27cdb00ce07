"""Tracked emails through SendGrid (a local v3 server): each recipient's pixel and link
tokens travel as substitutions, so emails that differ only in them still share a request."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries
from tests.sendgrid_server import SendGridServer


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running


def test_tracked_emails_still_batch(
    make_settings: Callable[..., Settings], server: SendGridServer
) -> None:
    app = App(
        make_settings(
            mail_backend="sendgrid",
            sendgrid_api_url=server.url,
            sendgrid_api_key="SG.right-key",
            track_opens="true",
            track_clicks="true",
        )
    )
    try:
        with transaction(app.sessions) as session:
            ids = queue_deliveries(session, add_subscribers(session, 3), item_id="tips/walking")
        deliver_due(app, now=NOW)
        with app.sessions() as session:
            statuses = list(session.scalars(select(Delivery.status).order_by(Delivery.id)))
    finally:
        app.close()
    assert statuses == ["sent"] * 3
    recorded = server.recorded()
    assert sorted(recorded.accepted_delivery_ids) == sorted(str(i) for i in ids)
    assert recorded.requests == 1
