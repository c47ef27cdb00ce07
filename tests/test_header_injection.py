"""Issue 11: no subscriber value can add a header or replace the body, on any backend.

Over HTTP and the CLI as an attacker meets it: ``POST /subscribe`` with a crafted name,
confirm through the link in the email, ``newsletter tick``; then read what the outbox
file, the aiosmtpd server or the SendGrid server got.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from newsletter.app import App
from newsletter.cli import main
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.backends import BACKENDS, Backend, Received, environ, running_backend

REPLY_TO_BCC = "x=?utf-8?q?=0D=0AReply-To:_attacker@evil.example=0D=0ABcc:_boss@v.example?="
# 87 characters: ends the headers and starts an HTML body of the attacker's.
BODY_SWAP = (
    "=?utf-8?q?=0D=0AContent-Type:text/html=0D=0A=0D=0A<a_href=3Dhttp://evil.example>$</a>?="
)
# Decodes to a lone surrogate (UnicodeEncodeError) and to CR/LF inside the To name.
SURROGATE = "=?utf-8?b?7aCA?= Ann"
QUOTED_CRLF = '"=?utf-8?q?Ann=0D=0ABcc:_boss@v.example?=" Lee'

# The only headers the service writes (lower case), on every backend.
OURS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "x-newsletter-delivery",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with running_backend(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def signup(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], backend: Backend
) -> Iterator[Callable[[str, str], list[Received]]]:
    """Subscribe ``email`` as ``name`` over HTTP, confirm from the email, tick; return
    every email the backend got."""
    app = App(make_settings(**backend.settings))
    client = TestClient(create_web_app(app), follow_redirects=False)
    env = environ(cli_env, backend)

    def tick() -> None:
        later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        result = CliRunner().invoke(main, ["tick", "--now", later], env=env)
        assert result.exit_code == 0, result.output

    def run(email: str, name: str) -> list[Received]:
        answer = client.post("/subscribe", json={"email": email, "first_name": name})
        assert answer.status_code == 202, answer.text
        tick()
        confirmations = [m for m in backend.emails() if "/confirm/" in m.text]
        assert confirmations, backend.emails()
        found = re.search(r"/confirm/([A-Za-z0-9._-]+)", confirmations[-1].text)
        assert found, confirmations[-1].text
        assert client.post(f"/confirm/{found.group(1)}").status_code == 200
        tick()
        return backend.emails()

    yield run
    app.close()


def assert_only_our_headers(received: Received) -> None:
    assert set(received.header_names) <= OURS, received.header_names
    assert len(received.header_names) == len(set(received.header_names))
    for value in (*received.headers.values(), received.subject, received.to_name):
        assert "\r" not in value
        assert "\n" not in value
        assert "=?" not in value  # nothing left that a MIME library would decode


@pytest.mark.parametrize(
    "name", [REPLY_TO_BCC, SURROGATE, QUOTED_CRLF], ids=["reply-to-bcc", "surrogate", "crlf-to"]
)
def test_encoded_words_in_a_name_add_no_header(
    signup: Callable[[str, str], list[Received]], backend: Backend, name: str
) -> None:
    """The confirmation and the welcome both arrive, each with only our headers, its
    subject on one line and the recipient alone in To."""
    emails = signup("victim@example.org", name)
    assert len(emails) == 2
    confirmation, welcome = emails
    for received in emails:
        assert_only_our_headers(received)
        assert received.to_email == "victim@example.org"
        assert received.content_type == "multipart/alternative"
        assert "evil.example" not in received.headers.get("reply-to", "")
    assert confirmation.subject == "Please confirm your subscription"
    assert welcome.subject.startswith("Welcome, ")
    assert "Welcome" in welcome.text


def test_a_name_cannot_replace_the_body(
    signup: Callable[[str, str], list[Received]], backend: Backend
) -> None:
    """The 87-character name that used to end the headers and start an HTML body of its
    own is shown as text inside our email."""
    assert len(BODY_SWAP) == 87
    emails = signup("victim@example.org", BODY_SWAP)
    assert len(emails) == 2
    for received in emails:
        assert_only_our_headers(received)
        assert received.content_type == "multipart/alternative"
        assert "href=http://evil.example" not in received.html
        assert 'href="http://evil.example' not in received.html
        assert received.text.strip()
    assert "Welcome" in emails[1].text
    assert "Welcome" in emails[1].html
