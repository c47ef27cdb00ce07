"""Issue 11: every email is well-formed on every backend: a ``Date``, a Message-ID unique
worldwide and stable per attempt, 8-bit bodies declared (or encoded 7-bit) over SMTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.compose import message_id_for
from newsletter.db import make_engine, transaction, upgrade
from newsletter.dispatch import _fresh_nonces
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.backends import BACKENDS, Backend, Received, environ, running_backend
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries

MESSAGE_ID = re.compile(r"<nl-(\d+)-(\d+)-([0-9a-f]{16})@shop\.example>")


def send_tips(
    make_settings: Callable[..., Settings],
    cli_env: dict[str, Any],
    backend: Backend,
    names: list[str],
) -> list[Received]:
    """Queue one tip per name (a subscriber each) and send them with ``newsletter tick``."""
    app = App(make_settings(**backend.settings))
    with transaction(app.sessions) as session:
        ids = [
            add_subscriber(session, f"reader{i}@example.org", first_name=name).id
            for i, name in enumerate(names)
        ]
        queue_deliveries(session, ids, item_id="tips/meet-your-ql")
    app.close()
    later = (NOW + timedelta(minutes=1)).isoformat()
    result = CliRunner().invoke(
        main, ["tick", "--now", later, "--job", "deliver"], env=environ(cli_env, backend)
    )
    assert result.exit_code == 0, result.output
    return backend.emails()


def deliveries(make_settings: Callable[..., Settings]) -> list[Delivery]:
    app = App(make_settings())
    with app.sessions() as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    app.close()
    return rows


@pytest.mark.parametrize("name", BACKENDS)
def test_every_email_has_a_date_and_a_random_message_id(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path, name: str
) -> None:
    """``Date`` is the send time; the Message-ID (in angle brackets, SendGrid included)
    carries the delivery, the attempt and the delivery's stored random part."""
    with running_backend(name, tmp_path) as backend:
        emails = send_tips(make_settings, cli_env, backend, ["Ann", "Bob", "Cem"])
    assert len(emails) == 3
    rows = {r.id: r for r in deliveries(make_settings)}
    nonces = set()
    for received in emails:
        assert parsedate_to_datetime(received.headers["date"]) == NOW + timedelta(minutes=1)
        found = MESSAGE_ID.fullmatch(received.headers["message-id"])
        assert found, received.headers["message-id"]
        row = rows[int(found.group(1))]
        assert int(found.group(2)) == row.attempts == 1
        assert found.group(3) == row.message_nonce
        expected = message_id_for(
            row.id, row.attempts, row.message_nonce, from_email="x@shop.example"
        )
        assert received.headers["message-id"] == f"<{expected}>"
        nonces.add(row.message_nonce)
    assert len(nonces) == 3


def test_message_ids_differ_between_installs_and_after_a_reset(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """Delivery 1, attempt 1 of two fresh databases (a reset, or another install with
    the same domain) get different Message-IDs."""
    seen = []
    for run in ("first", "second"):
        url = f"sqlite:///{tmp_path / run}.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        outbox = tmp_path / run / "outbox"
        backend = Backend("outbox", {"database_url": url, "outbox_dir": str(outbox)}, outbox)
        emails = send_tips(make_settings, cli_env, backend, ["Ann"])
        seen.append(emails[0].headers["message-id"])
    first, second = seen
    assert first.startswith("<nl-1-1-")
    assert second.startswith("<nl-1-1-")
    assert first != second


def test_a_retry_gets_its_own_message_id_and_the_same_random_part(
    make_settings: Callable[..., Settings],
) -> None:
    """Stable per attempt: the id is rebuilt from stored values; a new attempt differs."""
    one = message_id_for(7, 1, "00112233aabbccdd", from_email="tips@shop.example")
    assert one == message_id_for(7, 1, "00112233aabbccdd", from_email="tips@shop.example")
    assert one == "nl-7-1-00112233aabbccdd@shop.example"
    assert message_id_for(7, 2, "00112233aabbccdd", from_email="tips@shop.example") != one
    assert message_id_for(7, 1, "00ff", from_email="tips@") == "nl-7-1-00ff@localhost"


@pytest.mark.parametrize("offered", [True, False], ids=["8bitmime-offered", "not-offered"])
def test_smtp_declares_8bitmime_or_sends_7bit(
    make_settings: Callable[..., Settings],
    cli_env: dict[str, Any],
    tmp_path: Path,
    offered: bool,
) -> None:
    """A UTF-8 body goes with ``BODY=8BITMIME`` where the server offers it (RFC 6152);
    elsewhere it is re-encoded so every byte on the wire is 7-bit."""
    with running_backend("smtp", tmp_path, offer_8bitmime=offered) as backend:
        emails = send_tips(make_settings, cli_env, backend, ["Jörg", "Ann"])
    by_name = {m.to_email: m for m in emails}
    jorg, ann = by_name["reader0@example.org"], by_name["reader1@example.org"]
    assert "Jörg" in jorg.text
    assert "Jörg" in jorg.html
    assert isinstance(jorg.raw, bytes)
    assert isinstance(ann.raw, bytes)
    if offered:
        assert jorg.mail_options == ("BODY=8BITMIME",)
        assert not jorg.raw.isascii()
    else:
        assert jorg.mail_options == ()
        assert jorg.raw.isascii()
    # A body that is ASCII already (the tip's text is) still goes plainly.
    assert ann.raw.isascii() or ann.mail_options == ("BODY=8BITMIME",)


@pytest.mark.parametrize("count", [0, 1, 2, 1000])
def test_a_batch_draws_one_fresh_nonce_per_email(count: int) -> None:
    """The batch's nonces come from one read of the random source: exactly ``count``
    of them, each 16 hex digits (8 random bytes), none repeated."""
    nonces = list(_fresh_nonces(count))
    assert len(nonces) == count
    assert all(re.fullmatch(r"[0-9a-f]{16}", n) for n in nonces)
    assert len(set(nonces)) == count
    assert len(set(_fresh_nonces(count)) | set(nonces)) == 2 * count  # a new draw each call
