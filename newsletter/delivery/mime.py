"""Build the RFC 5322 message shared by the SMTP and outbox backends."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from newsletter.delivery.base import OutgoingEmail
from newsletter.one_line import one_line

DELIVERY_HEADER = "X-Newsletter-Delivery"

# RFC 5322 allows 998-character lines. With the default 78, a long List-Unsubscribe URL
# would be folded into RFC 2047 encoded-words, which breaks one-click unsubscribe.
MIME_POLICY = policy.SMTP.clone(max_line_length=998)


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
    domain = message.from_email.rpartition("@")[2] or "localhost"
    mime["Message-ID"] = (
        f"<{message.message_id}>" if message.message_id else make_msgid(domain=domain)
    )
    mime[DELIVERY_HEADER] = str(message.delivery_id)
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime
