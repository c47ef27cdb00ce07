"""Every process claims under a name of its own (``ledger.worker_name``).

``mark_sending`` and ``record_results`` act only on rows leased under the caller's name. When
two processes shared a name (every ``serve``'s confirmation sender was ``confirmations``, every
web process ``web``), a process that stalled past its lease could mark ``sending`` -- and send
-- a row that another process had claimed after the lease expired: one email, twice.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import select

from newsletter.app import App
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.sending import send_test
from newsletter.confirmations import deliver_confirmations
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendResult
from newsletter.ledger import claim_batch, mark_sending, recover_expired_leases, worker_name
from newsletter.models import Delivery, DeliveryKind
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.mailers import RecordingMailer

LEASE = timedelta(minutes=5)
NAME = "from newsletter.ledger import worker_name; print(worker_name('confirmations'))"


def _name_in_another_process() -> str:
    done = subprocess.run(
        [sys.executable, "-c", NAME], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_two_processes_of_one_role_claim_under_different_names() -> None:
    here = worker_name("confirmations")
    assert here == f"confirmations:{socket.gethostname()}:{os.getpid()}"
    first, second = _name_in_another_process(), _name_in_another_process()
    assert len({here, first, second}) == 3
    assert all(name.startswith("confirmations:") for name in (first, second))


def test_a_stalled_sender_cannot_send_a_row_another_sender_took_over(app: App) -> None:
    with transaction(app.sessions) as session:
        (row_id,) = queue_deliveries(
            session,
            [add_subscriber(session, "late@example.org", status="pending").id],
            item_id="system/confirmation",
            kind=DeliveryKind.CONFIRMATION,
        )
    stalled = _name_in_another_process()  # a sender on another host, or an older process
    with transaction(app.sessions) as session:
        claimed = claim_batch(session, worker=stalled, limit=10, now=NOW, lease=LEASE)
    assert [c.id for c in claimed] == [row_id]
    later = NOW + LEASE + timedelta(seconds=1)  # the stalled sender's lease ran out
    with transaction(app.sessions) as session:
        assert recover_expired_leases(session, now=later) == (1, 0)
    # This process's sender takes the row over and sends it.
    assert deliver_confirmations(app, clock=lambda: later, worker=None) == 1
    with app.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.id == row_id)).one()
    assert row.status == "sent"
    # The stalled sender wakes up and tries to mark its old claim sending: nothing is its own.
    with transaction(app.sessions) as session:
        assert mark_sending(session, [row_id], now=later, worker=stalled, lease=LEASE) == []
    assert len(list((app.settings.effective_outbox_dir).glob("*.eml"))) == 1


class LeaseNames(RecordingMailer):
    """Notes under which name each row it is handed was marked ``sending``."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self._app = app
        self.names: set[str | None] = set()

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        ids = [m.delivery_id for m in messages]
        with transaction(self._app.sessions) as session:
            self.names |= set(
                session.scalars(select(Delivery.leased_by).where(Delivery.id.in_(ids)))
            )
        return super().send_batch(messages)


def test_a_test_send_claims_under_a_name_of_its_own(
    make_settings: Callable[..., Settings],
) -> None:
    """``campaign test-send`` claimed as ``"worker"`` (``deliver_due``'s default), a name
    every test-send process shared."""
    settings = make_settings()
    web = App(settings)
    with transaction(web.sessions) as session:
        add_subscriber(session, "reader@example.org")
    create_campaign(
        web,
        "campaigns/seven-day-reset",
        name="c",
        include=(),
        exclude=(),
        pause_drips=False,
        now=NOW,
    )
    mailer = LeaseNames(web)
    sender = App(settings, mailer=mailer)
    outcomes = send_test(sender, "c", ["seed@example.org"], now=NOW)
    assert [o.status for o in outcomes] == ["sent"]
    assert mailer.names == {worker_name("test-send")}
    web.close()
    sender.close()
