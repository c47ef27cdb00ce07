"""Issue 11: international addresses on SendGrid.

The local SendGrid server checks ``format: email`` as SendGrid does (ASCII only); the
mailer IDNA-encodes domains, and an address SendGrid cannot take fails alone, before any
request, never taking its batch with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.delivery.sendgrid import sendgrid_address
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.backends import environ, running_backend
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.sendgrid_server import SendGridServer

ASCII = ["ann@example.org", "bob@example.org", "cem@example.org"]


def send(
    make_settings: Callable[..., Settings],
    cli_env: dict[str, Any],
    tmp_path: Path,
    addresses: list[str],
) -> tuple[list[Delivery], SendGridServer]:
    with running_backend("sendgrid", tmp_path) as backend:
        app = App(make_settings(**backend.settings))
        with transaction(app.sessions) as session:
            ids = [add_subscriber(session, a, first_name="Reader").id for a in addresses]
            queue_deliveries(session, ids, item_id="tips/meet-your-ql")
        app.close()
        later = (NOW + timedelta(minutes=1)).isoformat()
        result = CliRunner().invoke(
            main, ["tick", "--now", later, "--job", "deliver"], env=environ(cli_env, backend)
        )
        assert result.exit_code == 0, result.output
        assert backend.sendgrid is not None
        server = backend.sendgrid
    app = App(make_settings())
    with app.sessions() as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    app.close()
    return rows, server


def test_an_idn_recipient_batched_with_ascii_ones_is_delivered(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """One request for all four; the IDN domain travels IDNA-encoded; none failed."""
    rows, server = send(make_settings, cli_env, tmp_path, ["juergen@bücher.example", *ASCII])
    assert [r.status for r in rows] == ["sent"] * 4
    recorded = server.recorded()
    assert (recorded.requests, recorded.invalid, recorded.accepted) == (1, 0, 1)
    to = [p["to"][0]["email"] for p in recorded.bodies[0]["personalizations"]]
    assert to == ["juergen@xn--bcher-kva.example", *ASCII]


def test_an_address_sendgrid_cannot_take_fails_alone(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """A non-ASCII local part (SendGrid has no SMTPUTF8) fails with the reason before any
    request; the others are sent."""
    rows, server = send(make_settings, cli_env, tmp_path, [ASCII[0], "jürgen@bücher.example"])
    assert [r.status for r in rows] == ["sent", "failed"]
    assert rows[1].error == (
        "not sendable: SendGrid cannot take 'jürgen@bücher.example': its local part is not "
        "ASCII (use the smtp backend with a relay that offers SMTPUTF8)"
    )
    recorded = server.recorded()
    assert (recorded.requests, recorded.invalid) == (1, 0)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("juergen@bücher.example", "juergen@xn--bcher-kva.example"),
        ("ann@straße.example", "ann@xn--strae-oqa.example"),  # IDNA 2008 keeps the ß
        ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
        ("ann@example.org", "ann@example.org"),
    ],
)
def test_sendgrid_address(address: str, expected: str) -> None:
    assert sendgrid_address(address) == expected


@pytest.mark.parametrize(
    "address",
    ["jürgen@bücher.example", "juergen@bücher.example", "ann@-bad-.example", "a b@example.org"],
)
def test_the_local_server_checks_email_formats_like_sendgrid(address: str) -> None:
    """``format: email`` is enforced: what SendGrid answers 400 to, the server does too."""
    body = {
        "personalizations": [{"to": [{"email": address}]}],
        "from": {"email": "tips@shop.example"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    with SendGridServer() as server:
        answer = httpx.post(
            f"{server.url}/v3/mail/send", json=body, headers={"Authorization": "Bearer SG.k"}
        )
        ok = httpx.post(
            f"{server.url}/v3/mail/send",
            json={**body, "personalizations": [{"to": [{"email": "ann@example.org"}]}]},
            headers={"Authorization": "Bearer SG.k"},
        )
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert error["message"] == f"{address!r} is not a 'email'"
    assert error["field"] == "personalizations.0.to.0.email"
    assert ok.status_code == 202
