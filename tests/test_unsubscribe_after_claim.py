"""Issue 11: an unsubscribe stops an email already claimed, up to the moment its chunk
is marked ``sending``; only a chunk already in the provider's hands can still reach them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.sending import send_campaign_now
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendResult
from newsletter.delivery.outbox import OutboxMailer
from newsletter.jobs import deliver
from newsletter.ledger import SKIPPED_BEFORE_SENDING
from newsletter.models import Delivery, Subscriber
from newsletter.settings import Settings
from newsletter.tokens import make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.mailbox import read_outbox

ITEM = "campaigns/seven-day-reset"


class UnsubscribeDuringFirstChunk(OutboxMailer):
    """The outbox, ten emails per chunk; while it writes the first chunk, ``leave`` is
    called with that chunk (the people who then click one-click unsubscribe are chosen
    among those in the later chunks, whatever order the claim gave)."""

    max_batch = 10

    def __init__(self, directory: Path, leave: Callable[[Sequence[OutgoingEmail]], None]) -> None:
        super().__init__(directory)
        self._leave: Callable[[Sequence[OutgoingEmail]], None] | None = leave

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        if self._leave is not None:
            leave, self._leave = self._leave, None
            leave(messages)
        return super().send_batch(messages)


def test_people_who_unsubscribe_after_the_claim_get_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """30 recipients in one claimed batch of three chunks; 8 of those in chunks 2 and 3
    unsubscribe while chunk 1 is being sent: they get nothing, the other 22 get it once."""
    settings = make_settings()
    web = App(settings)
    client = TestClient(create_web_app(web), follow_redirects=False)
    with transaction(web.sessions) as session:
        people = [add_subscriber(session, f"p{i:02d}@example.org") for i in range(30)]
        tokens = {
            p.email: make_unsubscribe_token(p.public_id, keys=settings.secret_keys) for p in people
        }
    leaving: list[str] = []

    def leave(first_chunk: Sequence[OutgoingEmail]) -> None:
        later = sorted(set(tokens) - {m.to_email for m in first_chunk})
        assert len(later) == 20
        leaving.extend(later[i] for i in (0, 1, 5, 9, 10, 14, 18, 19))
        for address in leaving:
            answer = client.post(
                f"/unsubscribe/{tokens[address]}", data={"List-Unsubscribe": "One-Click"}
            )
            assert answer.status_code == 200

    create_campaign(web, ITEM, name="c", include=(), exclude=(), pause_drips=False, now=NOW)
    send_campaign_now(web, "c", now=NOW)
    outbox = tmp_path / "sent"
    sender = App(settings, mailer=UnsubscribeDuringFirstChunk(outbox, leave))
    result = deliver(sender, NOW + timedelta(minutes=1))
    assert (result["claimed"], result["outcomes"]) == (30, {"sent": 22, "skipped": 8})
    received = sorted(str(m["To"]).split("<")[-1].rstrip(">") for m in read_outbox(outbox))
    assert received == sorted(set(tokens) - set(leaving))
    with sender.sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status, Delivery.error).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    skipped = sorted((email, error) for email, status, error in rows if status == "skipped")
    assert skipped == [(a, SKIPPED_BEFORE_SENDING) for a in leaving]
    sender.close()
    web.close()
