"""Welcomes for names of different lengths share one SendGrid request.

The text part once underlined the subject with ``"=" * subject|length``; the subject
holds the first name, so the underline differed in length per recipient and only names
of equal length could be batched. The layout is now independent of per-recipient
lengths, and each recipient still receives exactly the email rendered for them alone
(the batch-equivalence proof lives in ``test_personalization``; here it is checked on
the real request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.content.model import Links, SubscriberContext
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.sendgrid_server import SendGridServer

NAMES = ["Al", "Bea", "Jonathan", "Maximiliane", "Bartholomew-Christopher", None]


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running


def _substituted(template: str, substitutions: dict[str, str]) -> str:
    for tag, value in substitutions.items():
        template = template.replace(tag, value)
    return template


def test_welcomes_for_names_of_different_lengths_go_out_in_one_request(
    make_settings: Callable[..., Settings], server: SendGridServer
) -> None:
    app = App(
        make_settings(
            mail_backend="sendgrid", sendgrid_api_key="SG.key", sendgrid_api_url=server.url
        )
    )
    try:
        with transaction(app.sessions) as session:
            ids = [
                add_subscriber(session, f"w{n}@example.org", first_name=name).id
                for n, name in enumerate(NAMES)
            ]
            queue_deliveries(session, ids, item_id="system/welcome")
        deliver_due(app, now=NOW)
        with app.sessions() as session:
            assert set(session.scalars(select(Delivery.status))) == {"sent"}
        recorded = server.recorded()
        # One shared body for the named welcomes; "Welcome, and thank you" (no name) has
        # no per-recipient value in its subject and may go out as its own request.
        assert recorded.requests <= 2
        [body] = [b for b in recorded.bodies if len(b["personalizations"]) > 1]
        assert len(body["personalizations"]) == len(NAMES) - 1
        _check_each_recipient_gets_their_own_email(app, body)
    finally:
        app.close()


def _check_each_recipient_gets_their_own_email(app: App, body: dict[str, Any]) -> None:
    contents = {c["type"]: c["value"] for c in body["content"]}
    for personalization in body["personalizations"]:
        to = personalization["to"][0]
        subs = personalization.get("substitutions", {})
        alone = app.library.render(
            "system/welcome",
            SubscriberContext(email=to["email"], first_name=to.get("name")),
            Links(unsubscribe="https://news.example/unsubscribe/x"),  # footer not compared
        )
        assert _substituted(body["subject"], subs) == alone.subject
        above_footer = alone.text.split("\n--\n")[0]
        assert _substituted(contents["text/plain"], subs).startswith(above_footer)
        assert alone.subject in _substituted(contents["text/html"], subs)
