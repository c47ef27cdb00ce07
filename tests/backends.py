"""The three mail backends as a user runs them, for end-to-end tests: the outbox folder,
SMTP to a real aiosmtpd server on loopback, SendGrid to ``tests/sendgrid_server.py``.

``Backend.emails()`` gives what each recipient got, read back from the raw output:
``Received`` with the header names, the decoded subject and recipient, and the parts.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from newsletter.delivery.personalization import apply_substitutions
from tests.sendgrid_server import SendGridServer
from tests.servers import free_port


@dataclass(frozen=True)
class Received:
    """One email as its recipient's server got it."""

    header_names: tuple[str, ...]  # lower case, in order, repeats kept
    headers: Mapping[str, str]  # decoded, lower-case names (last one wins)
    subject: str
    to_name: str
    to_email: str
    text: str
    html: str
    content_type: str
    raw: bytes | dict[str, Any] = b""  # the bytes (outbox, SMTP) or the request (SendGrid)
    mail_options: tuple[str, ...] = ()  # SMTP: the MAIL FROM parameters


def read_raw(raw: bytes, mail_options: tuple[str, ...] = ()) -> Received:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    to = parsed["To"].addresses
    parts: dict[str, str] = {}
    for part in parsed.walk():
        if part.get_content_maintype() == "text":
            parts.setdefault(part.get_content_subtype(), str(part.get_content()))
    return Received(
        header_names=tuple(k.lower() for k in parsed),
        headers={k.lower(): str(v) for k, v in parsed.items()},
        subject=str(parsed["Subject"]),
        to_name=to[0].display_name if to else "",
        to_email=f"{to[0].username}@{to[0].domain}" if to else "",
        text=parts.get("plain", ""),
        html=parts.get("html", ""),
        content_type=parsed.get_content_type(),
        raw=raw,
        mail_options=mail_options,
    )


def read_sendgrid(body: Mapping[str, Any]) -> list[Received]:
    """Each personalization of one request, with its substitutions applied."""
    content = {c["type"]: c["value"] for c in body["content"]}
    found = []
    for p in body["personalizations"]:
        subs = p.get("substitutions", {})
        headers = {k.lower(): v for k, v in p.get("headers", {}).items()}
        found.append(
            Received(
                header_names=tuple(headers),
                headers=headers,
                subject=apply_substitutions(p.get("subject", body.get("subject", "")), subs),
                to_name=p["to"][0].get("name", ""),
                to_email=p["to"][0]["email"],
                text=apply_substitutions(content.get("text/plain", ""), subs),
                html=apply_substitutions(content.get("text/html", ""), subs),
                content_type="multipart/alternative",
                raw=dict(body),
            )
        )
    return found


@dataclass
class SMTPSink:
    """An aiosmtpd handler keeping every message and its MAIL FROM options."""

    messages: list[tuple[bytes, tuple[str, ...]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    offer_8bitmime: bool = True

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not self.offer_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r.upper()]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((bytes(envelope.original_content), tuple(envelope.mail_options)))
        return "250 2.0.0 Ok: queued"


@dataclass
class Backend:
    name: str
    settings: dict[str, str]
    outbox: Path | None = None
    sink: SMTPSink | None = None
    sendgrid: SendGridServer | None = None

    def emails(self) -> list[Received]:
        if self.outbox is not None:
            paths = sorted(self.outbox.glob("*.eml"))
            return [read_raw(p.read_bytes()) for p in paths]
        if self.sink is not None:
            with self.sink.lock:
                return [read_raw(raw, options) for raw, options in self.sink.messages]
        assert self.sendgrid is not None
        return [r for body in self.sendgrid.recorded().bodies for r in read_sendgrid(body)]


BACKENDS = ("outbox", "smtp", "sendgrid")


@contextmanager
def running_backend(name: str, tmp_path: Path, *, offer_8bitmime: bool = True) -> Iterator[Backend]:
    """The backend ``name`` with the settings (``NEWSLETTER_`` suffixes) that select it."""
    if name == "outbox":
        yield Backend(name, {}, outbox=tmp_path / "outbox")
        return
    if name == "smtp":
        sink = SMTPSink(offer_8bitmime=offer_8bitmime)
        port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            url = f"smtp://127.0.0.1:{port}?starttls=false&timeout=10"
            yield Backend(name, {"mail_backend": "smtp", "smtp_url": url}, sink=sink)
        finally:
            controller.stop()
        return
    with SendGridServer() as server:
        settings = {
            "mail_backend": "sendgrid",
            "sendgrid_api_url": server.url,
            "sendgrid_api_key": "SG.test-key",
        }
        yield Backend(name, settings, sendgrid=server)


def environ(base: Mapping[str, str], backend: Backend) -> dict[str, str]:
    """A CLI environment over ``base`` that uses ``backend``."""
    env = dict(base)
    env.update({f"NEWSLETTER_{k.upper()}": v for k, v in backend.settings.items()})
    return env
