"""Turn a rendered email and its recipient into an ``OutgoingEmail`` (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.content.model import NO_EVENT, EventContext, Links, RenderedEmail, SubscriberContext
from newsletter.delivery.base import OutgoingEmail


@dataclass(frozen=True)
class Sender:
    from_email: str
    from_name: str
    reply_to: str | None
    base_url: str


DELIVERY_PARAM = "d"


def unsubscribe_url(base_url: str, token: str, *, delivery_id: int | None = None) -> str:
    """The subscriber's link; ``?d=`` names the email it was in (for the stats)."""
    url = f"{base_url}/unsubscribe/{token}"
    return url if delivery_id is None else f"{url}?{DELIVERY_PARAM}={delivery_id}"


def read_delivery_param(value: str | None) -> int | None:
    """The delivery id from an untrusted ``?d=``: a positive 64-bit integer, else None."""
    if value is None or not re.fullmatch(r"[0-9]{1,19}", value):
        return None
    number = int(value)
    return number if 0 < number < 2**63 else None


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url}/confirm/{token}"


def compose(
    rendered: RenderedEmail,
    *,
    delivery_id: int,
    attempt: int,
    recipient: SubscriberContext,
    links: Links,
    sender: Sender,
    categories: tuple[str, ...] = (),
    subject_prefix: str = "",
    event: EventContext = NO_EVENT,
) -> OutgoingEmail:
    """Marketing email gets RFC 8058 one-click unsubscribe headers; all get a Message-ID."""
    headers: dict[str, str] = {}
    if not rendered.transactional and links.unsubscribe:
        headers["List-Unsubscribe"] = f"<{links.unsubscribe}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    domain = sender.from_email.rpartition("@")[2] or "localhost"
    personal = {"email": recipient.email}
    if recipient.first_name:
        personal["first_name"] = recipient.first_name
    if links.unsubscribe:
        personal["unsubscribe_url"] = links.unsubscribe
    if links.confirm:
        personal["confirm_url"] = links.confirm
    # Custom fields and event properties differ per recipient: SendGrid batching turns
    # them into substitutions like the name (``newsletter.delivery.personalization``).
    for name, value in recipient.attributes.items():
        personal[f"attr_{name}"] = str(value)
    for name, value in event.properties.items():
        personal[f"event_{name}"] = str(value)
    return OutgoingEmail(
        delivery_id=delivery_id,
        to_email=recipient.email,
        to_name=recipient.first_name,
        subject=subject_prefix + rendered.subject,
        html=rendered.html,
        text=rendered.text,
        from_email=sender.from_email,
        from_name=sender.from_name,
        reply_to=sender.reply_to,
        message_id=f"nl-{delivery_id}-{attempt}@{domain}",
        headers=headers,
        categories=categories,
        personal=personal,
    )
