"""The unsubscribe link of a test send leads to a page that says it was a test send."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from newsletter.app import App
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.ledger import NewDelivery, enqueue
from newsletter.models import DeliveryKind
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.mailbox import link, read_outbox
from tests.test_web_subscribe import Clock


def test_the_unsubscribe_link_of_a_test_send_shows_a_test_send_page(
    make_settings: Callable[..., Settings],
) -> None:
    app = App(make_settings())
    try:
        with transaction(app.sessions) as session:
            enqueue(
                session,
                [
                    NewDelivery(
                        key="test:seed",
                        kind=DeliveryKind.TEST,
                        item_id="campaigns/seven-day-reset",
                        due_at=NOW,
                        to_email="seed@shop.example",
                    )
                ],
                now=NOW,
            )
        deliver_due(app, now=NOW)
        [message] = read_outbox(app.settings.effective_outbox_dir)
        assert message["Subject"].startswith("[TEST] ")
        url = link(message, "/unsubscribe/")
        header = str(message["List-Unsubscribe"])
        assert url in header
        client = TestClient(create_web_app(app, clock=Clock(NOW)))
        page = client.get(urlsplit(url).path)
        assert page.status_code == 200
        assert "This was a test send" in page.text
        assert "nothing to unsubscribe from" in page.text
        one_click = client.post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200
        assert "This was a test send" in one_click.text
    finally:
        app.close()
