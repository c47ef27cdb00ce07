"""Turn a rendered email and its recipient into an ``OutgoingEmail`` (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from newsletter.content.model import NO_EVENT, EventContext, Links, RenderedEmail, SubscriberContext
from newsletter.delivery.base import OutgoingEmail, Skeleton
from newsletter.one_line import one_line


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


def preferences_url(base_url: str, token: str) -> str:
    """The preference centre: the unsubscribe token is its credential too."""
    return f"{base_url}/preferences/{token}"


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url}/confirm/{token}"


def message_id_for(delivery_id: int, attempt: int, nonce: str, *, from_email: str) -> str:
    """The Message-ID (without angle brackets) of one attempt of one delivery.

    ``nonce`` is the delivery's random part (``deliveries.message_nonce``): with it the id
    is unique worldwide (across installs and database resets), and rebuilding the same
    attempt gives the same id.
    """
    domain = from_email.rpartition("@")[2] or "localhost"
    return f"nl-{delivery_id}-{attempt}-{nonce}@{domain}"


def keep_url(base_url: str, token: str) -> str:
    return f"{base_url}/keep/{token}"


def compose(
    rendered: RenderedEmail,
    *,
    delivery_id: int,
    attempt: int,
    recipient: SubscriberContext,
    links: Links,
    sender: Sender,
    nonce: str,
    now: datetime,
    categories: tuple[str, ...] = (),
    subject_prefix: str = "",
    return_path: str | None = None,
    event: EventContext = NO_EVENT,
    tracking: Mapping[str, str] | None = None,
    skeleton: Skeleton | None = None,
) -> OutgoingEmail:
    """Marketing email gets RFC 8058 one-click unsubscribe headers; all get a Message-ID
    and a ``Date`` (``now``).

    Every value that becomes a header (subject, names) is passed through ``one_line``
    here, the path all backends share, so no subscriber value can split a header on any
    of them.

    ``tracking`` (the per-recipient tracking URLs by name) joins ``personal``;
    ``skeleton`` is the producer's promise that it gives this email's subject, html and
    text (``OutgoingEmail.skeleton``).
    """
    headers: dict[str, str] = {}
    if not rendered.transactional and links.unsubscribe:
        headers["List-Unsubscribe"] = f"<{links.unsubscribe}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    personal = {"email": recipient.email}
    if recipient.first_name:
        personal["first_name"] = recipient.first_name
    if links.unsubscribe:
        personal["unsubscribe_url"] = links.unsubscribe
    if links.confirm:
        personal["confirm_url"] = links.confirm
    if links.preferences:
        personal["preferences_url"] = links.preferences
    # Custom fields and event properties differ per recipient: SendGrid batching turns
    # them into substitutions like the name (``newsletter.delivery.personalization``).
    for name, value in recipient.attributes.items():
        personal[f"attr_{name}"] = str(value)
    for name, value in event.properties.items():
        personal[f"event_{name}"] = str(value)
    if tracking:  # per-recipient values: SendGrid can still batch tracked emails
        personal.update(tracking)
    return OutgoingEmail(
        delivery_id=delivery_id,
        to_email=recipient.email,
        to_name=one_line(recipient.first_name or "") or None,
        subject=one_line(subject_prefix + rendered.subject),
        html=rendered.html,
        text=rendered.text,
        from_email=sender.from_email,
        from_name=one_line(sender.from_name or "") or None,
        reply_to=sender.reply_to,
        message_id=message_id_for(delivery_id, attempt, nonce, from_email=sender.from_email),
        headers=headers,
        categories=categories,
        personal=personal,
        date=now,
        return_path=return_path,
        skeleton=skeleton,
    )
