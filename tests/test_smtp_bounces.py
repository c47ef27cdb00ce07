"""A permanent SMTP refusal of the address (550 5.1.1 at RCPT, 550 5.1.1 at DATA) through a
real aiosmtpd server suppresses the subscriber as ``bounced`` at once; no later drip step is
planned. Other refusals (policy, our sender) suppress nobody. VERP return path on the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.bounces.status import Severity, classify_reply, classify_status
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.drip.planner import plan_drips
from newsletter.enrollment import enroll_on_confirm
from newsletter.models import Delivery, EngagementEvent, Enrollment, Subscriber, Suppression
from newsletter.settings import Settings
from tests.factories import add_subscriber
from tests.servers import free_port

T0 = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # 08:00 Berlin: inside the send window

REPLIES = {
    "gone": ("rcpt", "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"),
    "gonedata": ("data", "550 5.1.1 mailbox unavailable"),
    "policy": ("rcpt", "554 5.7.1 Service unavailable; client host blocked"),
}


@dataclass
class Relay:
    senders: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        local = address.split("@")[0]
        if local in REPLIES and REPLIES[local][0] == "rcpt":
            return REPLIES[local][1]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.senders.append(envelope.mail_from)
        local = envelope.rcpt_tos[0].split("@")[0]
        if local in REPLIES and REPLIES[local][0] == "data":
            return REPLIES[local][1]
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, str]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, f"smtp://127.0.0.1:{port}?starttls=false&timeout=10"
    controller.stop()


@pytest.fixture
def smtp_app(make_settings: Callable[..., Settings], relay: tuple[Relay, str]) -> Iterator[App]:
    app = App(
        make_settings(mail_backend="smtp", smtp_url=relay[1], bounce_address="bounces@shop.example")
    )
    yield app
    app.close()


def enrolled(app: App, email: str) -> int:
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(
            session, email, timezone="Europe/Berlin", created_at=T0, updated_at=T0
        )
        enroll_on_confirm(session, subscriber.id, app.library.sequences(), now=T0)
        return subscriber.id


def test_550_at_rcpt_suppresses_at_once_and_no_later_step_is_planned(
    smtp_app: App, relay: tuple[Relay, str]
) -> None:
    gone = enrolled(smtp_app, "gone@example.org")
    fine = enrolled(smtp_app, "fine@example.org")
    plan_drips(smtp_app, T0)
    deliver_due(smtp_app, now=T0, worker="w")
    with smtp_app.sessions() as session:
        subscriber = session.get(Subscriber, gone)
        assert subscriber is not None
        assert subscriber.status == "bounced"
        assert session.scalar(
            select(Suppression.reason).where(
                Suppression.email_hash == email_hash("gone@example.org")
            )
        ) == ("bounced")
        enrollment = session.scalars(select(Enrollment).where(Enrollment.subscriber_id == gone))
        assert [e.status for e in enrollment] == ["stopped"]
        [event] = session.scalars(select(EngagementEvent))
        assert (event.kind, event.source, event.human, event.subscriber_id) == (
            "bounce",
            "smtp",
            False,
            gone,
        )
        assert "smtp 550: 5.1.1" in event.reason
    # Weeks later the healthy subscriber gets the next steps, the bounced one nothing.
    for days in range(1, 30):
        moment = T0 + timedelta(days=days)
        plan_drips(smtp_app, moment)
        deliver_due(smtp_app, now=moment, worker="w")
    with smtp_app.sessions() as session:
        kinds = {
            sid: [
                d.status
                for d in session.scalars(select(Delivery).where(Delivery.subscriber_id == sid))
            ]
            for sid in (gone, fine)
        }
        fine_ids = list(
            session.scalars(
                select(Delivery.id).where(Delivery.subscriber_id == fine, Delivery.status == "sent")
            )
        )
        skipped = set(
            session.scalars(
                select(Delivery.error).where(
                    Delivery.subscriber_id == fine, Delivery.status == "skipped"
                )
            )
        )
    assert kinds[gone] == ["failed"]
    assert kinds[fine].count("sent") >= 3
    assert set(kinds[fine]) <= {"sent", "skipped"}
    assert skipped <= {"example content"}  # the shipped example testimonials are never sent
    # The envelope sender was the VERP address of each email.
    assert sorted(relay[0].senders) == sorted(f"bounces+{i}@shop.example" for i in fine_ids)


def test_550_5_1_1_at_data_suppresses_but_a_policy_refusal_does_not(smtp_app: App) -> None:
    data = enrolled(smtp_app, "gonedata@example.org")
    policy = enrolled(smtp_app, "policy@example.org")
    plan_drips(smtp_app, T0)
    deliver_due(smtp_app, now=T0, worker="w")
    with smtp_app.sessions() as session:
        assert session.get(Subscriber, data).status == "bounced"  # type: ignore[union-attr]
        assert session.get(Subscriber, policy).status == "active"  # type: ignore[union-attr]
        statuses = session.scalars(select(Delivery.status).where(Delivery.subscriber_id == policy))
        assert list(statuses) == ["failed"]


@pytest.mark.parametrize(
    ("code", "text", "stage", "expected"),
    [
        pytest.param(550, "5.1.1 User unknown", "rcpt", Severity.HARD, id="5.1.1"),
        pytest.param(550, "5.1.10 null MX", "rcpt", Severity.HARD, id="5.1.10"),
        pytest.param(550, "5.2.1 mailbox disabled", "rcpt", Severity.HARD, id="5.2.1"),
        pytest.param(552, "5.2.2 mailbox full", "data", Severity.SOFT, id="5.2.2-full"),
        pytest.param(553, "5.1.8 bad sender domain", "rcpt", Severity.NONE, id="5.1.8-ours"),
        pytest.param(554, "5.7.1 blocked", "rcpt", Severity.NONE, id="5.7.1-policy"),
        pytest.param(550, "no such user", "rcpt", Severity.HARD, id="550-basic-rcpt"),
        pytest.param(550, "rejected", "data", Severity.NONE, id="550-basic-data"),
        pytest.param(554, "transaction failed", "rcpt", Severity.NONE, id="554-basic"),
        pytest.param(451, "4.3.0 try later", "rcpt", Severity.SOFT, id="4xx"),
        pytest.param(250, "ok", "rcpt", Severity.NONE, id="2xx"),
        pytest.param(400, "4.0.0 odd", "rcpt", Severity.SOFT, id="400-edge"),
        pytest.param(500, "5.1.1 odd", "rcpt", Severity.HARD, id="500-edge"),
        pytest.param(599, "5.1.1 odd", "rcpt", Severity.HARD, id="599-edge"),
        pytest.param(600, "5.1.1 odd", "rcpt", Severity.NONE, id="600-not-smtp"),
        pytest.param(551, "user not local", "rcpt", Severity.HARD, id="551-basic"),
        pytest.param(553, "mailbox name not allowed", "rcpt", Severity.HARD, id="553-basic"),
        pytest.param(521, "5.1.1 enhanced decides", "rcpt", Severity.HARD, id="521-enhanced"),
        pytest.param(550, "4.1.1 mismatched class", "rcpt", Severity.HARD, id="mismatch-basic"),
    ],
)
def test_classify_reply(code: int, text: str, stage: str, expected: Severity) -> None:
    assert classify_reply(code, text, stage=stage) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.1.1", Severity.HARD),
        ("5.1.2", Severity.HARD),
        ("5.1.7", Severity.NONE),
        ("5.2.1", Severity.HARD),
        ("5.2.2", Severity.SOFT),
        ("5.2.3", Severity.NONE),
        ("5.7.1", Severity.NONE),
        ("4.4.7", Severity.SOFT),
        ("2.0.0", Severity.NONE),
    ],
)
def test_classify_status(status: str, expected: Severity) -> None:
    assert classify_status(status) is expected
