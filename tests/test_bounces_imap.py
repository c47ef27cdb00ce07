"""Asynchronous bounces and complaints through a real IMAP server (dovecot on loopback):
real-shaped DSN (RFC 3464, Postfix) and ARF (RFC 5965) reports in ``tests/data/bounces``
each suppress the right subscriber once; a rerun does nothing; malformed reports and
non-reports are kept aside in the ``Unparsed`` folder, never lost."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from newsletter.app import App
from newsletter.bounces.job import run_bounces
from newsletter.bounces.mailbox import parse_imap_url
from newsletter.bounces.reports import ReportError, parse_report
from newsletter.db import transaction
from newsletter.errors import ConfigurationError
from newsletter.jobs import JOBS
from newsletter.models import Delivery, EngagementEvent, Subscriber
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.imap_server import IMAPServer, dovecot

DATA = Path(__file__).parent / "data" / "bounces"
BOUNCES = "bounces@shop.example"


def report(name: str, delivery_id: int, **replace: str) -> bytes:
    text = (DATA / name).read_text().replace("__DELIVERY__", str(delivery_id))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.fixture
def imap(tmp_path: Path) -> Iterator[IMAPServer]:
    with dovecot(tmp_path / "imap") as server:
        yield server


@pytest.fixture
def app(make_settings: Callable[..., Settings], imap: IMAPServer) -> Iterator[App]:
    application = App(
        make_settings(bounce_address=BOUNCES, bounce_imap_url=imap.url + "?starttls=false")
    )
    yield application
    application.close()


def sent_to(app: App, *locals_: str) -> dict[str, int]:
    """One sent email to ``<local>@example.org`` each; their delivery ids."""
    ids: dict[str, int] = {}
    with transaction(app.sessions) as session:
        for local in locals_:
            subscriber = add_subscriber(session, f"{local}@example.org")
            [ids[local]] = queue_deliveries(session, [subscriber.id], item_id=f"tips/{local}")
        session.execute(
            update(Delivery).values(status="sent", sent_at=NOW, provider_message_id="m")
        )
    return ids


def statuses(app: App) -> dict[str, str]:
    with app.sessions() as session:
        return {s.email.split("@")[0]: s.status for s in session.scalars(select(Subscriber))}


def events(app: App) -> list[tuple[str, str, int | None]]:
    with app.sessions() as session:
        rows = session.scalars(select(EngagementEvent).order_by(EngagementEvent.id))
        return [(e.kind, e.source, e.delivery_id) for e in rows]


def test_each_report_suppresses_the_right_subscriber_once_and_a_rerun_does_nothing(
    app: App, imap: IMAPServer
) -> None:
    ids = sent_to(app, "hard", "postfix", "arf", "bystander")
    imap.append(report("dsn-rfc3464-hard.eml", ids["hard"]))
    imap.append(report("postfix-bounce.eml", ids["postfix"]))
    imap.append(report("arf-rfc5965.eml", ids["arf"]))
    imap.append(report("malformed-report.eml", ids["bystander"]))
    imap.append(report("out-of-office.eml", ids["bystander"]))

    result = JOBS["bounces"](app, NOW)

    assert result == {"processed": 3, "unparsed": 2, "already": 0}
    assert statuses(app) == {
        "hard": "bounced",
        "postfix": "bounced",
        "arf": "complained",
        "bystander": "active",
    }
    assert events(app) == [
        ("bounce", "report", ids["hard"]),
        ("bounce", "report", ids["postfix"]),
        ("complaint", "report", ids["arf"]),
    ]
    assert (imap.count("INBOX"), imap.count("Processed"), imap.count("Unparsed")) == (0, 3, 2)

    # A rerun finds nothing; the same report delivered again is recognised and moved.
    assert run_bounces(app, NOW + timedelta(minutes=10)) == {
        "processed": 0,
        "unparsed": 0,
        "already": 0,
    }
    imap.append(report("dsn-rfc3464-hard.eml", ids["hard"]))
    assert run_bounces(app, NOW + timedelta(minutes=20))["already"] == 1
    assert len(events(app)) == 3
    assert (imap.count("INBOX"), imap.count("Processed")) == (0, 4)


def test_three_soft_bounces_in_a_row_suppress(app: App, imap: IMAPServer) -> None:
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, "soft@example.org")
        delivery_ids = queue_deliveries(
            session, [subscriber.id], item_id="tips/a"
        ) + queue_deliveries(session, [subscriber.id], item_id="tips/b")
        delivery_ids += queue_deliveries(session, [subscriber.id], item_id="tips/c")
        session.execute(update(Delivery).values(status="sent", sent_at=NOW))
    for n, delivery_id in enumerate(delivery_ids[:2]):
        imap.append(report("dsn-rfc3464-delayed.eml", delivery_id, AA22222=f"AA2222{n}"))
    assert run_bounces(app, NOW)["processed"] == 2
    assert statuses(app) == {"soft": "active"}
    imap.append(report("dsn-rfc3464-delayed.eml", delivery_ids[2], AA22222="AA22229"))
    run_bounces(app, NOW + timedelta(days=1))
    assert statuses(app) == {"soft": "bounced"}
    assert [kind for kind, _, _ in events(app)] == ["soft_bounce"] * 3


def test_a_report_naming_our_email_but_another_recipient_suppresses_nobody(
    app: App, imap: IMAPServer
) -> None:
    ids = sent_to(app, "hard", "victim")
    forged = report("dsn-rfc3464-hard.eml", ids["hard"]).replace(
        b"hard@example.org", b"victim@example.org"
    )
    imap.append(forged)
    assert run_bounces(app, NOW)["processed"] == 1
    assert statuses(app) == {"hard": "active", "victim": "active"}
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EngagementEvent)) == 0


def test_an_unreachable_mailbox_is_reported_not_raised(
    make_settings: Callable[..., Settings],
) -> None:
    from tests.servers import free_port

    app = App(
        make_settings(
            bounce_imap_url=f"imap://u:p@127.0.0.1:{free_port()}/INBOX?starttls=false&timeout=2"
        )
    )
    try:
        result = run_bounces(app, NOW)
    finally:
        app.close()
    assert "cannot read the bounce mailbox at 127.0.0.1" in result["error"]
    assert "NEWSLETTER_BOUNCE_IMAP_URL" in result["error"]
    assert "u:p" not in result["error"]


def test_a_connection_broken_at_goodbye_is_logged_at_debug_not_raised(
    app: App, imap: IMAPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the mailbox after the connection broke: no error for the run, one DEBUG
    line with the error (shown by --verbose)."""
    import socket

    from newsletter.bounces.mailbox import IMAPMailbox

    config = parse_imap_url(app.settings.bounce_imap_url)
    with (
        caplog.at_level(logging.DEBUG, logger="newsletter.bounces.mailbox"),
        IMAPMailbox(config) as mailbox,
    ):
        assert list(mailbox.messages()) == []
        mailbox.conn.sock.shutdown(socket.SHUT_RDWR)
    records = [r for r in caplog.records if r.name == "newsletter.bounces.mailbox"]
    assert [r.levelname for r in records] == ["DEBUG"]
    assert records[0].getMessage().startswith("bounces: closing the mailbox connection failed: ")
    assert records[0].getMessage() != "bounces: closing the mailbox connection failed: "


# ---- the parser, without IMAP ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "recipient", "reason"),
    [
        ("dsn-rfc3464-hard.eml", "hard", "hard@example.org", "dsn failed 5.1.1"),
        ("dsn-rfc3464-delayed.eml", "soft", "soft@example.org", "dsn delayed 4.4.7"),
        ("postfix-bounce.eml", "hard", "postfix@example.org", "dsn failed 5.1.1"),
        ("arf-rfc5965.eml", "complaint", "arf@example.org", "arf abuse SomeGenerator/1.0"),
    ],
)
def test_parse_real_shaped_reports(name: str, kind: str, recipient: str, reason: str) -> None:
    parsed = parse_report(report(name, 4711), bounce_address=BOUNCES)
    [fact] = parsed.facts
    assert (fact.kind, fact.delivery_id, fact.recipient) == (kind, 4711, recipient)
    assert fact.reason.startswith(reason)


def test_the_delivery_comes_from_the_returned_headers_without_a_bounce_address() -> None:
    parsed = parse_report(report("postfix-bounce.eml", 99), bounce_address="")
    assert parsed.facts[0].delivery_id == 99


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed-report.eml", "no failed or delayed recipient"),
        ("out-of-office.eml", "not a report"),
    ],
)
def test_unusable_messages_are_report_errors(name: str, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_report(report(name, 5), bounce_address=BOUNCES)


def test_a_report_about_someone_elses_mail_is_a_report_error() -> None:
    raw = report("dsn-rfc3464-hard.eml", 5).replace(b"bounces+5@shop.example", b"x@else.example")
    raw = raw.replace(b"X-Newsletter-Delivery: 5", b"X-Other: 5")
    with pytest.raises(ReportError, match="names none of our emails"):
        parse_report(raw, bounce_address=BOUNCES)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pop3://h/INBOX", "must look like"),
        ("imap://h/INBOX", "needs a user name"),
        ("imap://u:p@mail.example/INBOX?starttls=false", "only on loopback"),
        ("imaps://u:p@h/INBOX?folder=x", "unknown option 'folder'"),
    ],
)
def test_bad_imap_urls_name_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_imap_url(url)
    assert caught.value.variable == "NEWSLETTER_BOUNCE_IMAP_URL"
