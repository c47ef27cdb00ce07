"""A batch's emails are built after its claim commits, holding no lock.

Before, ``deliver`` rendered a whole claimed batch inside the claim's transaction: on
SQLite that held the one writer (every signup and unsubscribe waited for a thousand
renders), on PostgreSQL the subscriber rows the cap decision locks. Here the mailer's own
check pauses the build on its first email, and a recipient unsubscribes meanwhile: the
answer comes at once, and the email to them is then withdrawn, not sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, insert, select, text, update

from newsletter.app import App
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.sending import send_campaign_now
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendResult
from newsletter.jobs import deliver
from newsletter.models import Delivery, DeliveryLink, Subscriber
from newsletter.settings import Settings
from newsletter.tokens import make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.mailers import RecordingMailer
from tests.test_tracking_web import content_with_links

ITEM = "campaigns/seven-day-reset"
WAIT = 20.0  # seconds: only reached when something is wrong


def _queued(web: App, prefix: str, count: int, item_id: str) -> list[int]:
    """``count`` new subscribers ``<prefix><i>@example.org`` with one email of ``item_id``
    queued each: the ledger ids, in order."""
    with transaction(web.sessions) as session:
        people = [add_subscriber(session, f"{prefix}{i}@example.org").id for i in range(count)]
        return sorted(queue_deliveries(session, people, item_id=item_id))


def _rows(web: App, ids: list[int]) -> dict[int, Delivery]:
    with transaction(web.sessions) as session:
        return {r.id: r for r in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}


class PausingMailer(RecordingMailer):
    """Records what it sends; its per-email check (called while the batch is built)
    stops at the first email until ``resume`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.building = threading.Event()
        self.resume = threading.Event()

    def problem(self, message: OutgoingEmail) -> str | None:
        if not self.building.is_set():
            self.building.set()
            assert self.resume.wait(WAIT), "the test never resumed the build"
        return None


def _send_in_background(sender: App) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = deliver(sender, NOW + timedelta(minutes=1))
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_an_unsubscribe_while_a_batch_is_built_is_answered_and_honoured(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    web = App(settings)
    client = TestClient(create_web_app(web), follow_redirects=False)
    with transaction(web.sessions) as session:
        people = [add_subscriber(session, f"p{i}@example.org") for i in range(5)]
        leaving = people[3]
        token = make_unsubscribe_token(leaving.public_id, keys=settings.secret_keys)
        everyone = [p.email for p in people]
    create_campaign(web, ITEM, name="c", include=(), exclude=(), pause_drips=False, now=NOW)
    send_campaign_now(web, "c", now=NOW)

    mailer = PausingMailer()
    sender = App(settings, mailer=mailer)
    thread, outcome = _send_in_background(sender)
    try:
        assert mailer.building.wait(WAIT), outcome
        answered: dict[str, int] = {}
        unsubscribe = threading.Thread(
            target=lambda: answered.update(
                status=client.post(
                    f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
                ).status_code
            ),
            daemon=True,
        )
        unsubscribe.start()
        # Before: the unsubscribe waited for the claim's transaction, i.e. for the build.
        unsubscribe.join(5.0)
        assert answered == {"status": 200}, "the unsubscribe waited for the batch's build"
    finally:
        mailer.resume.set()
        thread.join(WAIT)
    assert "error" not in outcome, outcome.get("error")
    assert sorted(m.to_email for m in mailer.sent) == sorted(set(everyone) - {leaving.email})
    with transaction(web.sessions) as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.id == leaving.id))
        rows = {
            r.subscriber_id: r
            for r in session.execute(select(Delivery).where(Delivery.campaign_id.is_not(None)))
            .scalars()
            .all()
        }
    assert status == "unsubscribed"
    assert rows[leaving.id].status == "skipped"
    assert rows[leaving.id].message_nonce is None  # never marked sending: no nonce stored
    for person in people:
        if person.id != leaving.id:
            row = rows[person.id]
            assert row.status == "sent"
            # the Message-ID's nonce was stored before the email was handed over
            message = next(m for m in mailer.sent if m.delivery_id == row.id)
            assert row.message_nonce
            assert row.message_nonce in (message.message_id or "")
    web.close()
    sender.close()


class LeaseThief(RecordingMailer):
    """While the batch is built, the claim's lease is taken over, as if it had run out
    and another worker had claimed the rows."""

    def __init__(self, steal: Callable[[], None]) -> None:
        super().__init__()
        self._steal: Callable[[], None] | None = steal

    def problem(self, message: OutgoingEmail) -> str | None:
        if self._steal is not None:
            steal, self._steal = self._steal, None
            steal()
        return None


def test_rows_lost_during_the_build_get_no_nonce_or_links_from_this_worker(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Nonces and tracked links are written with the ``sending`` mark, for the rows the
    worker still owns: a row another worker holds by then keeps its own."""
    settings = make_settings(track_clicks="true", content_dir=str(content_with_links(tmp_path)))
    web = App(settings)
    ids = _queued(web, "q", 3, "tips/two-links")
    stolen, kept = ids[:2], ids[2]

    def steal() -> None:
        with transaction(web.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":  # fail, not hang, if locked
                session.execute(text("SET LOCAL lock_timeout = '5s'"))
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(stolen))
                .values(leased_by="someone-else", message_nonce="theirs")
            )

    mailer = LeaseThief(steal)
    sender = App(settings, mailer=mailer)
    deliver(sender, NOW + timedelta(minutes=1))
    assert [m.delivery_id for m in mailer.sent] == [kept]
    rows = _rows(web, ids)
    with transaction(web.sessions) as session:
        links = dict(
            session.execute(
                select(DeliveryLink.delivery_id, func.count()).group_by(DeliveryLink.delivery_id)
            ).all()
        )
    for i in stolen:
        assert (rows[i].status, rows[i].leased_by, rows[i].message_nonce) == (
            "leased",
            "someone-else",
            "theirs",
        )
    assert rows[kept].status == "sent"
    assert rows[kept].message_nonce
    assert rows[kept].message_nonce != "theirs"
    assert set(links) == {kept}  # the item has links to track
    assert links[kept] > 0
    web.close()
    sender.close()


def test_the_content_library_is_loaded_before_the_claim_transaction_opens(
    make_settings: Callable[..., Settings],
) -> None:
    """A process's first ``deliver`` loads the content library (for the cap policy, about
    0.3 s for the shipped content) before its claim begins, not while it holds the
    writer: a cron-run ``newsletter deliver`` is a new process every minute."""
    settings = make_settings()
    web = App(settings)
    with transaction(web.sessions) as session:
        person = add_subscriber(session, "first@example.org")
        queue_deliveries(session, [person.id], item_id="tips/meet-your-ql")
    sender = App(settings, mailer=RecordingMailer())
    loaded_at_begin: list[bool] = []
    event.listen(
        sender.engine, "begin", lambda _conn: loaded_at_begin.append("library" in vars(sender))
    )
    deliver(sender, NOW + timedelta(minutes=1))
    assert [m.to_email for m in sender.mailer.sent] == ["first@example.org"]  # type: ignore[attr-defined]
    assert loaded_at_begin
    assert all(loaded_at_begin), loaded_at_begin
    web.close()
    sender.close()


class LedgerReader(RecordingMailer):
    """Reads the ledger as the provider call begins: what is stored by then."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self._app = app
        self.seen: dict[int, tuple[str, str | None, list[str]]] = {}

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        ids = [m.delivery_id for m in messages]
        with transaction(self._app.sessions) as session:
            for row in session.scalars(select(Delivery).where(Delivery.id.in_(ids))):
                links = session.scalars(
                    select(DeliveryLink.url)
                    .where(DeliveryLink.delivery_id == row.id)
                    .order_by(DeliveryLink.link_index)
                )
                self.seen[row.id] = (row.status, row.message_nonce, list(links))
        return super().send_batch(messages)


def test_nonce_and_links_are_stored_before_the_handover_and_replace_a_retrys(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """When the mailer is called, each email's row is ``sending`` with the nonce of its
    Message-ID and its tracked links; links stored by an earlier attempt are replaced."""
    settings = make_settings(track_clicks="true", content_dir=str(content_with_links(tmp_path)))
    web = App(settings)
    ids = _queued(web, "r", 2, "tips/two-links")
    with transaction(web.sessions) as session:
        session.execute(  # an earlier attempt of the first email stored other links
            insert(DeliveryLink),
            [{"delivery_id": ids[0], "link_index": i, "url": f"https://old/{i}"} for i in range(5)],
        )
    mailer = LedgerReader(web)
    sender = App(settings, mailer=mailer)
    deliver(sender, NOW + timedelta(minutes=1))
    assert sorted(mailer.seen) == ids
    for message in mailer.sent:
        status, nonce, links = mailer.seen[message.delivery_id]
        assert status == "sending"
        assert nonce
        assert nonce in (message.message_id or "")
        assert links
        assert not any(url.startswith("https://old/") for url in links)
    with transaction(web.sessions) as session:
        stored = session.scalars(select(DeliveryLink.url).where(DeliveryLink.delivery_id == ids[0]))
        assert list(stored) == mailer.seen[ids[0]][2]
    web.close()
    sender.close()


class FailsOneTakenOver(RecordingMailer):
    """While the batch is built, another worker takes over one row, and this worker's
    check finds that same email unsendable."""

    def __init__(self, app: App, victim: int) -> None:
        super().__init__()
        self._app, self._victim = app, victim

    def problem(self, message: OutgoingEmail) -> str | None:
        if message.delivery_id != self._victim:
            return None
        with transaction(self._app.sessions) as session:
            session.execute(
                update(Delivery).where(Delivery.id == self._victim).values(leased_by="someone-else")
            )
        return "unsendable"


def test_a_failure_is_not_recorded_on_a_row_another_worker_took_over(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    web = App(settings)
    ids = _queued(web, "s", 3, "tips/meet-your-ql")
    sender = App(settings, mailer=FailsOneTakenOver(web, ids[1]))
    deliver(sender, NOW + timedelta(minutes=1))
    rows = _rows(web, ids)
    assert (rows[ids[1]].status, rows[ids[1]].leased_by, rows[ids[1]].error) == (
        "leased",
        "someone-else",
        None,
    )
    assert {rows[i].status for i in (ids[0], ids[2])} == {"sent"}
    web.close()
    sender.close()


class BrokenCheck(RecordingMailer):
    def problem(self, message: OutgoingEmail) -> str | None:
        raise RuntimeError("a bug in the build")


def test_an_error_while_building_gives_the_batch_back_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    """Before, the build ran inside the claim, whose rollback returned the rows; now the
    claim is committed, so the rows are released: queued, the attempt not counted."""
    settings = make_settings()
    web = App(settings)
    ids = _queued(web, "t", 3, "tips/meet-your-ql")
    sender = App(settings, mailer=BrokenCheck())
    with pytest.raises(RuntimeError, match="a bug in the build"):
        deliver(sender, NOW + timedelta(minutes=1))
    with transaction(web.sessions) as session:
        rows = session.execute(
            select(Delivery.status, Delivery.attempts, Delivery.leased_by).where(
                Delivery.id.in_(ids)
            )
        ).all()
    assert set(rows) == {("queued", 0, None)}
    web.close()
    sender.close()


class FailsAllOneTakenOver(FailsOneTakenOver):
    """Every email is unsendable (no chunk goes out); one row is taken over meanwhile."""

    def problem(self, message: OutgoingEmail) -> str | None:
        return super().problem(message) or "unsendable"


def test_when_no_chunk_goes_out_failures_still_skip_rows_taken_over(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    web = App(settings)
    ids = _queued(web, "u", 2, "tips/meet-your-ql")
    sender = App(settings, mailer=FailsAllOneTakenOver(web, ids[0]))
    deliver(sender, NOW + timedelta(minutes=1))
    rows = _rows(web, ids)
    assert (rows[ids[0]].status, rows[ids[0]].leased_by) == ("leased", "someone-else")
    assert (rows[ids[1]].status, rows[ids[1]].error) == ("failed", "not sendable: unsendable")
    web.close()
    sender.close()
