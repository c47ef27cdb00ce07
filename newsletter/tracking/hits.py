"""Use cases behind ``GET /t/o/{token}`` and ``GET /t/c/{token}``: verify, classify, record.

* The token names the delivery (and the link index); the target URL is read from the
  links stored for that email when it was sent, never from the request. An unknown
  delivery or link is a ``TokenError`` (HTTP 404), exactly like a forged token.
* Every hit is recorded as an engagement event with its verdict (``classify``). A click
  that makes a burst (two links of one email within a second) also turns the other
  clicks of that burst into machine clicks.
* A human open or click resets the subscriber's soft-bounce count (three *in a row*).
* A hit on an email of a forgotten subscriber still redirects and records nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.engagement import CLICK, OPEN, Engagement, record
from newsletter.errors import TokenError
from newsletter.models import Delivery, DeliveryLink, EngagementEvent, Subscriber
from newsletter.tracking.classify import BURST, Hit, Kind, classify
from newsletter.tracking.tokens import read_click_token, read_open_token


def record_open(
    app: App, token: str, *, method: str, user_agent: str, ip: str | None, now: datetime
) -> None:
    """Record one open; ``TokenError`` for a bad token or an unknown email."""
    delivery_id = read_open_token(token, keys=app.settings.secret_keys)
    with transaction(app.sessions) as session:
        subscriber_id, sent_at = _delivery(session, delivery_id)
        if subscriber_id is None:
            return
        hit = Hit(Kind.OPEN, now, sent_at, method=method, user_agent=user_agent, ip=ip)
        _record(session, hit, delivery_id, subscriber_id, link_index=None)


def record_click(
    app: App, token: str, *, method: str, user_agent: str, ip: str | None, now: datetime
) -> str | None:
    """Record one click; return the original URL (None for the trap link)."""
    click = read_click_token(token, keys=app.settings.secret_keys)
    with transaction(app.sessions) as session:
        subscriber_id, sent_at = _delivery(session, click.delivery_id)
        url = None
        if not click.trap:
            url = session.scalar(
                select(DeliveryLink.url).where(
                    DeliveryLink.delivery_id == click.delivery_id,
                    DeliveryLink.link_index == click.link_index,
                )
            )
            if url is None:
                raise TokenError("this tracking link is not valid")
        if subscriber_id is None:
            return url
        near = list(
            session.execute(
                select(EngagementEvent.id, EngagementEvent.at).where(
                    EngagementEvent.delivery_id == click.delivery_id,
                    EngagementEvent.kind == CLICK,
                    EngagementEvent.link_index != click.link_index,
                    EngagementEvent.link_index >= 0,
                    EngagementEvent.at >= now - BURST,
                    EngagementEvent.at <= now + BURST,
                )
            )
        )
        hit = Hit(
            Kind.CLICK,
            now,
            sent_at,
            method=method,
            user_agent=user_agent,
            ip=ip,
            trap=click.trap,
            other_clicks=[row.at for row in near],
        )
        verdict = _record(session, hit, click.delivery_id, subscriber_id, click.link_index)
        if verdict == "burst":
            session.execute(
                update(EngagementEvent)
                .where(EngagementEvent.id.in_([row.id for row in near]))
                .values(human=False, reason="burst")
            )
        return url


def _delivery(session: Session, delivery_id: int) -> tuple[int | None, datetime | None]:
    row = session.execute(
        select(Delivery.subscriber_id, Delivery.sent_at).where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        raise TokenError("this tracking link is not valid")
    return row.subscriber_id, row.sent_at


def _record(
    session: Session, hit: Hit, delivery_id: int, subscriber_id: int, link_index: int | None
) -> str:
    verdict = classify(hit)
    record(
        session,
        [
            Engagement(
                kind=OPEN if hit.kind is Kind.OPEN else CLICK,
                at=hit.at,
                human=verdict.human,
                reason=verdict.reason,
                source="tracking",
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                link_index=link_index,
            )
        ],
    )
    if verdict.human:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id, Subscriber.soft_bounces > 0)
            .values(soft_bounces=0)
        )
    return verdict.reason
