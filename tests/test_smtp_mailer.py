"""``SMTPMailer`` against a real aiosmtpd server on loopback: outcomes per SMTP fault, and
the ledger state each one leads to through the dispatcher."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendStatus
from newsletter.delivery.smtp import SMTPAuthError, SMTPMailer, parse_smtp_url
from newsletter.dispatch import deliver_due
from newsletter.errors import ConfigurationError, ProviderAuthError
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.factories import add_subscriber, queue_deliveries

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

# The recipient's local part tells the server what to do.
FAULTS = {
    "temp-rcpt": "451 4.3.0 mailbox busy, try later",
    "perm-rcpt": "550 5.1.1 no such user",
    "temp-data": "452 4.3.1 insufficient storage",
    "perm-data": "554 5.7.1 message refused",
}


@dataclass
class FaultyHandler:
    """Accepts mail like a relay; recipients named in ``FAULTS`` or ``drop*`` misbehave."""

    delay: float = 0.0
    received: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        local = address.split("@")[0]
        if local == "drop-rcpt":
            server.transport.close()
            return "421 closing"
        if local in ("temp-rcpt", "perm-rcpt"):
            return FAULTS[local]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        local = envelope.rcpt_tos[0].split("@")[0]
        if self.delay:
            await asyncio.sleep(self.delay)
        if local in ("temp-data", "perm-data"):
            return FAULTS[local]
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.received.append(parsed)
        if local == "drop":  # the server got the message, the client never hears back
            server.transport.close()
            return "421 closing"
        return "250 2.0.0 Ok: queued"

    def delivery_ids(self) -> list[int]:
        with self.lock:
            return [int(m["X-Newsletter-Delivery"]) for m in self.received]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SMTPServer:
    handler: FaultyHandler
    port: int
    controller: Controller

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=false&timeout=10"


def start_server(handler: FaultyHandler, port: int | None = None, **kwargs: Any) -> SMTPServer:
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SMTPServer(handler, port, controller)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = start_server(FaultyHandler())
    yield server
    server.controller.stop()


def outgoing(delivery_id: int, to: str) -> OutgoingEmail:
    return OutgoingEmail(
        delivery_id=delivery_id,
        to_email=to,
        subject=f"Tip {delivery_id}",
        html=f"<p>Tip {delivery_id}</p>",
        text=f"Tip {delivery_id}",
        from_email="tips@shop.example",
        from_name="Backwise",
        message_id=f"nl-{delivery_id}-1@shop.example",
        headers={
            "List-Unsubscribe": "<https://news.example/unsubscribe/t>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


# ---- the URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "smtp://user:p%40ss@mail.example:587",
            ("mail.example", 587, False, "auto", "user", "p@ss", 1),
            id="starttls-when-offered",
        ),
        pytest.param(
            "smtps://mail.example", ("mail.example", 465, True, "never", None, None, 1), id="tls"
        ),
        pytest.param(
            "smtp://relay:2525?starttls=false&batch=20",
            ("relay", 2525, False, "never", None, None, 20),
            id="plain-relay",
        ),
        pytest.param(
            "smtp://relay?starttls=required",
            ("relay", 25, False, "required", None, None, 1),
            id="required",
        ),
    ],
)
def test_parse_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    c = parse_smtp_url(url)
    assert (c.host, c.port, c.implicit_tls, c.starttls, c.username, c.password, c.batch) == (
        expected
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("http://mail.example", "must look like", id="scheme"),
        pytest.param("smtp://mail.example?tls=yes", "unknown option 'tls'", id="option"),
        pytest.param("smtp://mail.example?starttls=maybe", "starttls must be", id="starttls"),
        pytest.param("smtp://mail.example?batch=0", "batch >= 1", id="batch"),
        pytest.param("smtp://mail.example:99999", "bad number", id="port"),
    ],
)
def test_bad_smtp_urls_name_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_smtp_url(url)
    assert caught.value.variable == "NEWSLETTER_SMTP_URL"


# ---- outcomes per message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "status", "error"),
    [
        pytest.param("ok", SendStatus.SENT, None, id="accepted"),
        pytest.param("temp-rcpt", SendStatus.RETRY, "smtp 451", id="4xx-rcpt"),
        pytest.param("perm-rcpt", SendStatus.FAILED, "smtp 550", id="5xx-rcpt"),
        pytest.param("temp-data", SendStatus.RETRY, "smtp 452", id="4xx-data"),
        pytest.param("perm-data", SendStatus.FAILED, "smtp 554", id="5xx-data"),
        pytest.param("drop", SendStatus.UNKNOWN, "during the message", id="drop-in-data"),
        pytest.param("drop-rcpt", SendStatus.RETRY, "before the message", id="drop-before"),
    ],
)
def test_each_smtp_fault_gives_its_outcome(
    smtp_server: SMTPServer, local: str, status: SendStatus, error: str | None
) -> None:
    mailer = SMTPMailer.from_url(smtp_server.url)
    try:
        [result] = mailer.send_batch([outgoing(7, f"{local}@example.org")])
        # The connection is still usable after a refusal (RSET), or reopened after a drop.
        [after] = mailer.send_batch([outgoing(8, "ok@example.org")])
    finally:
        mailer.close()
    assert result.status is status
    assert (result.error is None) if error is None else (error in (result.error or ""))
    assert after.status is SendStatus.SENT
    if status is SendStatus.SENT:
        assert result.provider_message_id == "nl-7-1@shop.example"


def test_one_connection_carries_a_batch_and_a_drop_stops_the_rest(
    smtp_server: SMTPServer,
) -> None:
    mailer = SMTPMailer.from_url(smtp_server.url + "&batch=10")
    batch = [
        outgoing(1, "ok@example.org"),
        outgoing(2, "perm-rcpt@example.org"),
        outgoing(3, "ok@example.org"),
        outgoing(4, "drop@example.org"),
        outgoing(5, "ok@example.org"),
        outgoing(6, "ok@example.org"),
    ]
    try:
        results = mailer.send_batch(batch)
    finally:
        mailer.close()
    assert mailer.max_batch == 10
    assert [(r.delivery_id, r.status) for r in results] == [
        (1, SendStatus.SENT),
        (2, SendStatus.FAILED),
        (3, SendStatus.SENT),
        (4, SendStatus.UNKNOWN),
        (5, SendStatus.NOT_ATTEMPTED),
        (6, SendStatus.NOT_ATTEMPTED),
    ]
    assert smtp_server.handler.delivery_ids() == [1, 3, 4]
    message = smtp_server.handler.received[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<nl-1-1@shop.example>"
    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None


def test_a_connection_closed_while_idle_is_reopened_without_losing_the_message() -> None:
    handler = FaultyHandler()
    server = start_server(handler)
    mailer = SMTPMailer.from_url(server.url)
    try:
        assert mailer.send_batch([outgoing(1, "ok@example.org")])[0].status is SendStatus.SENT
        server.controller.stop()  # drops the kept connection
        server = start_server(handler, port=server.port)
        assert mailer.send_batch([outgoing(2, "ok@example.org")])[0].status is SendStatus.SENT
    finally:
        mailer.close()
        server.controller.stop()
    assert handler.delivery_ids() == [1, 2]


def test_an_unreachable_server_means_retry_for_the_whole_batch() -> None:
    """The first message counts an attempt; the rest were never tried."""
    mailer = SMTPMailer.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2&batch=5")
    results = mailer.send_batch([outgoing(1, "a@example.org"), outgoing(2, "b@example.org")])
    assert [r.status for r in results] == [SendStatus.RETRY, SendStatus.NOT_ATTEMPTED]
    assert "cannot connect" in (results[0].error or "")


def test_refused_credentials_halt_sending() -> None:
    def authenticator(*args: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    server = start_server(FaultyHandler(), authenticator=authenticator, auth_require_tls=False)
    mailer = SMTPMailer.from_url(f"smtp://news:wrong@127.0.0.1:{server.port}?timeout=5")
    try:
        with pytest.raises(ProviderAuthError, match="refused the login for 'news'"):
            mailer.send_batch([outgoing(1, "ok@example.org")])
    finally:
        mailer.close()
        server.controller.stop()


def test_refused_credentials_mid_batch_keep_the_outcomes_already_known() -> None:
    """A reconnect refused mid-batch reports the email that did go out (no resend)."""
    logins = []

    def authenticator(*args: Any) -> AuthResult:
        logins.append(args)
        return AuthResult(success=len(logins) == 1, handled=False)

    handler = FaultyHandler()
    server = start_server(handler, authenticator=authenticator, auth_require_tls=False)
    mailer = SMTPMailer.from_url(f"smtp://news:pw@127.0.0.1:{server.port}?timeout=5&batch=5")
    batch = [
        outgoing(1, "ok@example.org"),
        outgoing(2, "drop-rcpt@example.org"),  # the connection dies; the reconnect is refused
        outgoing(3, "ok@example.org"),
    ]
    try:
        with pytest.raises(SMTPAuthError, match="refused the login") as caught:
            mailer.send_batch(batch)
    finally:
        mailer.close()
        server.controller.stop()
    known = caught.value.results
    assert [(r.delivery_id, r.status) if r else None for r in known] == [
        (1, SendStatus.SENT),
        None,
        None,
    ]
    assert handler.delivery_ids() == [1]


@pytest.mark.parametrize(
    ("smtputf8", "to", "status", "envelope_to"),
    [
        pytest.param(True, "jörg@example.org", SendStatus.SENT, "jörg@example.org", id="utf8"),
        pytest.param(False, "jörg@example.org", SendStatus.FAILED, None, id="no-utf8-local"),
        pytest.param(
            False,
            "joerg@bücher.example",
            SendStatus.SENT,
            "joerg@xn--bcher-kva.example",
            id="no-utf8-idna-domain",
        ),
    ],
)
def test_internationalised_addresses(
    smtputf8: bool, to: str, status: SendStatus, envelope_to: str | None
) -> None:
    """SMTPUTF8 when the server offers it, else IDNA for the domain or a clear failure;
    either way the rest of the batch goes out."""
    rcpts: list[str] = []

    class Recording(FaultyHandler):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            rcpts.append(address)
            return await super().handle_RCPT(server, session, envelope, address, options)

    handler = Recording()
    server = start_server(handler, enable_SMTPUTF8=smtputf8)
    mailer = SMTPMailer.from_url(server.url + "&batch=5")
    try:
        first, after = mailer.send_batch(
            [
                replace(outgoing(1, to), to_name="Jörg"),
                outgoing(2, "ok@example.org"),
            ]
        )
    finally:
        mailer.close()
        server.controller.stop()
    assert first.status is status
    assert after.status is SendStatus.SENT
    if envelope_to is None:
        assert "SMTPUTF8" in (first.error or "")
        assert to in (first.error or "")
        assert rcpts == ["ok@example.org"]
    else:
        assert rcpts == [envelope_to, "ok@example.org"]
        to_header = handler.received[0]["To"]
        if not smtputf8:  # RFC 2047 words; with SMTPUTF8 the header is raw UTF-8
            assert str(to_header) == f"Jörg <{envelope_to}>"


# ---- through the dispatcher: the ledger outcome ------------------------------------------


def add_subscribers(app: App, locals_: list[str]) -> dict[str, int]:
    """Active subscribers with one queued drip row each; returns local part -> delivery id."""
    with transaction(app.sessions) as session:
        subscriber_ids = [
            add_subscriber(session, f"{local}@example.org", timezone="Europe/Berlin").id
            for local in locals_
        ]
        delivery_ids = queue_deliveries(session, subscriber_ids, item_id="tips/meet-your-ql")
    return dict(zip(locals_, delivery_ids, strict=True))


def test_smtp_faults_lead_to_the_documented_ledger_state(
    make_settings: Callable[..., Settings], smtp_server: SMTPServer
) -> None:
    settings = make_settings(mail_backend="smtp", smtp_url=smtp_server.url)
    app = App(settings)
    try:
        ids = add_subscribers(app, ["ok", "temp-rcpt", "perm-rcpt", "perm-data", "drop", "ok2"])
        report = deliver_due(app, now=NOW, worker="w1")
        with app.sessions() as session:
            rows = {d.id: d for d in session.scalars(select(Delivery))}
    finally:
        app.close()
    state = {local: rows[i].status for local, i in ids.items()}
    assert state == {
        "ok": "sent",
        "temp-rcpt": "queued",  # retried later with backoff
        "perm-rcpt": "failed",
        "perm-data": "failed",
        "drop": "unknown",  # the server had it: never resent automatically
        "ok2": "sent",
    }
    retried = rows[ids["temp-rcpt"]]
    assert NOW + timedelta(seconds=30) <= retried.due_at <= NOW + timedelta(seconds=60)
    assert "451" in (retried.error or "")
    assert "550" in (rows[ids["perm-rcpt"]].error or "")
    assert report.claimed == 6
    assert sorted(smtp_server.handler.delivery_ids()) == sorted(
        [ids["ok"], ids["drop"], ids["ok2"]]
    )
    # 1 claim + one commit per message (batch=1: only the message in flight is at risk).
    assert report.commits == 1 + 6 + 1
    first = smtp_server.handler.received[0]
    assert str(first["List-Unsubscribe"]).startswith("<https://news.example/unsubscribe/")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_non_ascii_address_fails_alone_without_smtputf8(
    make_settings: Callable[..., Settings],
) -> None:
    """It used to crash the batch and leave the row ``sending`` (later ``unknown``)."""
    server = start_server(FaultyHandler(), enable_SMTPUTF8=False)
    app = App(make_settings(mail_backend="smtp", smtp_url=server.url))
    try:
        ids = add_subscribers(app, ["jörg", "ok"])
        deliver_due(app, now=NOW, worker="w1")
        with app.sessions() as session:
            rows = {d.id: d for d in session.scalars(select(Delivery))}
    finally:
        app.close()
        server.controller.stop()
    assert rows[ids["jörg"]].status == "failed"
    assert "SMTPUTF8" in (rows[ids["jörg"]].error or "")
    assert rows[ids["ok"]].status == "sent"


def test_the_bytes_sent_are_checked_and_a_bad_email_fails_alone(smtp_server: SMTPServer) -> None:
    """Handed over without the dispatcher's checks, an email whose built header block
    reads back with an extra line (a To value whose encoded word decodes to CR LF) fails
    before MAIL FROM; the others of the batch go out."""
    encoded = "=?utf-8?q?=0d=0abcc=3a_boss=40v.example=0d=0a?=@example.org"
    mailer = SMTPMailer.from_url(smtp_server.url)
    try:
        results = mailer.send_batch(
            [outgoing(1, "ok@example.org"), outgoing(2, encoded), outgoing(3, "ok@example.org")]
        )
    finally:
        mailer.close()
    assert [(r.delivery_id, r.status) for r in results] == [
        (1, SendStatus.SENT),
        (2, SendStatus.FAILED),
        (3, SendStatus.SENT),
    ]
    assert results[1].error == "smtp: the built email's To header holds a line break"
    assert smtp_server.handler.delivery_ids() == [1, 3]
