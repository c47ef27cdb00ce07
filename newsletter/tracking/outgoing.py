"""Tracking at render time, for every backend: rewrite one email and keep its links.

The dispatcher stores an email's links in the transaction that marks it ``sending``,
so they are stored before the email can reach anyone. Transactional email (the confirmation) and
test sends are never tracked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from newsletter.bound_lists import in_list
from newsletter.content.model import Links, RenderedEmail
from newsletter.models import DeliveryLink
from newsletter.settings import Settings
from newsletter.tracking.links import rewrite
from newsletter.tracking.tokens import TRAP_INDEX, make_click_token, make_open_token


def tracking_on(settings: Settings) -> bool:
    return settings.track_opens or settings.track_clicks


def track_email(
    rendered: RenderedEmail, *, delivery_id: int, links: Links, settings: Settings
) -> tuple[RenderedEmail, tuple[str, ...]]:
    """The email as it will be sent, and its original link URLs by index."""
    tracked, original, _ = track_email_personal(
        rendered, delivery_id=delivery_id, links=links, settings=settings
    )
    return tracked, original


def track_email_personal(
    rendered: RenderedEmail, *, delivery_id: int, links: Links, settings: Settings
) -> tuple[RenderedEmail, tuple[str, ...], dict[str, str]]:
    """Also the per-recipient tracking URLs by name, for ``OutgoingEmail.personal``: with
    them SendGrid can still send many tracked emails in one request (substitutions)."""
    if rendered.transactional or not tracking_on(settings):
        return rendered, (), {}
    base, keys = settings.base_url, settings.secret_keys

    def click_url(index: int) -> str:
        return f"{base}/t/c/{make_click_token(delivery_id, index, keys=keys)}"

    open_url = f"{base}/t/o/{make_open_token(delivery_id, keys=keys)}"
    tracked = rewrite(
        rendered.html,
        click_url=click_url if settings.track_clicks else None,
        open_url=open_url if settings.track_opens else None,
        trap_url=click_url(TRAP_INDEX) if settings.track_clicks else None,
        # account links (unsubscribe, preferences, keep) are never rewritten: they must
        # work even when the tracking host is blocked, and a click on them is not engagement
        keep=[u for u in (links.unsubscribe, links.preferences, links.keep) if u],
    )
    personal: dict[str, str] = {}
    if settings.track_opens:
        personal["track_open"] = open_url
    if settings.track_clicks:
        personal["track_trap"] = click_url(TRAP_INDEX)
        personal.update({f"track_link_{i}": click_url(i) for i in range(len(tracked.links))})
    return replace(rendered, html=tracked.html), tracked.links, personal


def store_links(session: Session, links: Mapping[int, Sequence[str]]) -> None:
    """Replace the stored links of these emails (a retry renders one again), by
    delivery id: one ``DELETE`` and one ``INSERT`` for them all. No commit."""
    if not links:
        return
    session.execute(
        delete(DeliveryLink).where(in_list(session, DeliveryLink.delivery_id, list(links)))
    )
    rows = [
        {"delivery_id": delivery_id, "link_index": i, "url": u}
        for delivery_id, urls in links.items()
        for i, u in enumerate(urls)
    ]
    if rows:
        session.execute(insert(DeliveryLink), rows)
