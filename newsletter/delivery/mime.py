"""Build the RFC 5322 message shared by the SMTP and outbox backends, and prove it sound."""

from __future__ import annotations

import email
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from newsletter.delivery.base import OutgoingEmail
from newsletter.one_line import one_line

DELIVERY_HEADER = "X-Newsletter-Delivery"

# RFC 5322 allows 998-character lines. With the default 78, a long List-Unsubscribe URL
# would be folded into RFC 2047 encoded-words, which breaks one-click unsubscribe.
MIME_POLICY = policy.SMTP.clone(max_line_length=998)
_READ_POLICY = policy.default
# What building or serializing a message raises on a value it cannot carry.
BUILD_ERRORS = (MessageError, UnicodeError, ValueError, TypeError, IndexError)


def build_mime(message: OutgoingEmail) -> EmailMessage:
    """A multipart/alternative message: plain text first, then HTML."""
    mime = EmailMessage(policy=MIME_POLICY)
    mime["Subject"] = one_line(message.subject)
    mime["From"] = formataddr((one_line(message.from_name or ""), message.from_email))
    to_name = one_line(message.to_name or "")
    # username/domain, not addr_spec: a non-ASCII local part (sent with SMTPUTF8) is
    # refused by the addr_spec parser.
    local, _, domain = message.to_email.rpartition("@")
    mime["To"] = (
        str(Address(display_name=to_name, username=local, domain=domain))
        if to_name
        else message.to_email
    )
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    if message.date is not None:
        mime["Date"] = format_datetime(message.date)
    domain = message.from_email.rpartition("@")[2] or "localhost"
    mime["Message-ID"] = (
        f"<{message.message_id.strip('<>')}>" if message.message_id else make_msgid(domain=domain)
    )
    mime[DELIVERY_HEADER] = str(message.delivery_id)
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


def _expected_headers(message: OutgoingEmail) -> list[str]:
    names = ["subject", "from", "to", "message-id", DELIVERY_HEADER.lower()]
    if message.reply_to:
        names.append("reply-to")
    if message.date is not None:
        names.append("date")
    names += [name.lower() for name in message.headers]
    return sorted([*names, "mime-version", "content-type"])


def mime_problem(message: OutgoingEmail) -> str | None:
    """Why ``message`` cannot go out as RFC 5322 bytes, or ``None`` when it can.

    Builds and serializes it, reads the bytes back like a receiving server and checks
    that exactly the headers we meant are there, each on one line, with the subject and
    recipient we meant: nothing a value holds can add a header or replace the body.
    """
    try:
        raw = build_mime(message).as_bytes()
    except BUILD_ERRORS as exc:
        return f"cannot build the email: {type(exc).__name__}: {exc}"
    parsed = email.message_from_bytes(raw, policy=_READ_POLICY)
    found = sorted(name.lower() for name in parsed)
    if found != _expected_headers(message):
        extra = sorted(set(found) - set(_expected_headers(message)))
        return f"the built email has unexpected headers {extra or found}"
    if parsed.get_content_type() != "multipart/alternative":
        return f"the built email is {parsed.get_content_type()}, not multipart/alternative"
    for name in parsed:
        if any(ch in str(parsed[name]) for ch in "\r\n"):
            return f"the built email's {name} header holds a line break"
    if str(parsed["Subject"]) != one_line(message.subject):
        return "the built email's subject differs from the one rendered"
    to = parsed["To"].addresses
    if len(to) != 1 or to[0].username + "@" + to[0].domain != message.to_email:
        return f"the built email's To header does not name {message.to_email!r} alone"
    return None
