"""List hygiene (sunset): ask the long-silent once, then stop writing to them.

With ``NEWSLETTER_SUNSET_DAYS=D`` (0, the default, turns it off), each pass:

1. **Ask.** An ``active`` subscriber who joined more than D days ago, got at least
   ``NEWSLETTER_SUNSET_MIN_EMAILS`` marketing emails in the last D days (counted only
   since engagement data exists) and made no *human* open, click or "keep" in that time
   gets one re-permission email (``content/system/still-interested.md``, with a
   one-click keep button); ``subscribers.sunset_notice_at`` records when.
2. **Revive.** A subscriber with a pending notice who engaged (a human open or click, or
   the keep button) since it was sent is left alone: the notice is cleared.
3. **Retire.** A notice older than ``NEWSLETTER_SUNSET_GRACE_DAYS`` (14) with no human
   engagement since makes the subscriber ``inactive``: no more marketing email, the
   suppression list says ``inactive``. Subscribing again (or the keep button) reverses it.

Machine opens and clicks (Apple MPP, link scanners) never count as engagement.

It needs engagement data and refuses to run (``SunsetRefused``, saying why) without it:
when our tracking is off and the backend reports no opens or clicks (only SendGrid does),
or when no open or click was ever recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.engagement import CLICK, ENGAGED, KEEP, OPEN, Engagement, record
from newsletter.errors import NewsletterError
from newsletter.ledger import NewDelivery, enqueue
from newsletter.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EngagementEvent,
    Subscriber,
    SubscriberStatus,
)
from newsletter.settings import Settings
from newsletter.subscriptions import activate, withdraw
from newsletter.tokens import read_keep_token

log = logging.getLogger(__name__)

SUNSET_ITEM = "system/still-interested"
MARKETING = (DeliveryKind.DRIP.value, DeliveryKind.CAMPAIGN.value)


class SunsetRefused(NewsletterError):
    """The sunset policy cannot judge engagement; the message says why and what to set."""


@dataclass(frozen=True)
class SunsetPlan:
    ask: list[tuple[int, str]]  # (subscriber id, email)
    revive: list[tuple[int, str]]
    retire: list[tuple[int, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "asked": len(self.ask),
            "revived": len(self.revive),
            "made_inactive": len(self.retire),
        }


def check_engagement_data(session: Session, settings: Settings) -> datetime:
    """When engagement data starts; ``SunsetRefused`` when there is none to go by."""
    tracking = settings.track_opens or settings.track_clicks
    if not tracking and settings.mail_backend != "sendgrid":
        raise SunsetRefused(
            "the sunset policy needs engagement data, but our tracking is off "
            "(NEWSLETTER_TRACK_OPENS, NEWSLETTER_TRACK_CLICKS) and the "
            f"{settings.mail_backend} backend reports no opens or clicks; turn tracking on "
            "(see README, Tracking and privacy) or set NEWSLETTER_SUNSET_DAYS=0"
        )
    first = session.scalar(
        select(func.min(EngagementEvent.at)).where(EngagementEvent.kind.in_([OPEN, CLICK]))
    )
    if first is None:
        raise SunsetRefused(
            "the sunset policy needs engagement data, but no open or click was ever "
            "recorded; wait until tracked emails have been read, then run it again"
        )
    return first


def plan_sunset(session: Session, settings: Settings, *, now: datetime) -> SunsetPlan:
    data_since = check_engagement_data(session, settings)
    window = now - timedelta(days=settings.sunset_days)
    since = max(window, data_since)
    engaged_recently = select(EngagementEvent.subscriber_id).where(
        EngagementEvent.human.is_(True),
        EngagementEvent.kind.in_(ENGAGED),
        EngagementEvent.at >= window,
        EngagementEvent.subscriber_id.is_not(None),
    )
    enough_email = (
        select(Delivery.subscriber_id)
        .where(
            Delivery.kind.in_(MARKETING),
            Delivery.status == DeliveryStatus.SENT.value,
            Delivery.sent_at >= since,
        )
        .group_by(Delivery.subscriber_id)
        .having(func.count() >= settings.sunset_min_emails)
    )
    ask = _pairs(
        session,
        select(Subscriber.id, Subscriber.email).where(
            Subscriber.status == SubscriberStatus.ACTIVE.value,
            Subscriber.sunset_notice_at.is_(None),
            func.coalesce(Subscriber.confirmed_at, Subscriber.created_at) <= window,
            Subscriber.id.in_(enough_email),
            Subscriber.id.not_in(engaged_recently),
        ),
    )
    engaged_since_notice = (
        select(EngagementEvent.id)
        .where(
            EngagementEvent.subscriber_id == Subscriber.id,
            EngagementEvent.human.is_(True),
            EngagementEvent.kind.in_(ENGAGED),
            EngagementEvent.at >= Subscriber.sunset_notice_at,
        )
        .exists()
    )
    noticed = select(Subscriber.id, Subscriber.email).where(
        Subscriber.status == SubscriberStatus.ACTIVE.value,
        Subscriber.sunset_notice_at.is_not(None),
    )
    revive = _pairs(session, noticed.where(engaged_since_notice))
    retire = _pairs(
        session,
        noticed.where(
            ~engaged_since_notice,
            Subscriber.sunset_notice_at <= now - timedelta(days=settings.sunset_grace_days),
        ),
    )
    return SunsetPlan(ask, revive, retire)


def _pairs(session: Session, statement: Select[int, str]) -> list[tuple[int, str]]:
    return [(row[0], row[1]) for row in session.execute(statement.order_by(Subscriber.id))]


def run_sunset(app: App, *, now: datetime, dry_run: bool = False) -> SunsetPlan:
    """Plan and (unless ``dry_run``) carry out one pass; ``SunsetRefused`` without data."""
    settings = app.settings
    with transaction(app.sessions) as session:
        plan = plan_sunset(session, settings, now=now)
        if dry_run:
            session.rollback()
            return plan
        app.library.item(SUNSET_ITEM)  # fails early, before any change, if it is missing
        enqueue(
            session,
            [
                NewDelivery(
                    key=f"sunset:{sid}:{now.date().isoformat()}",
                    kind=DeliveryKind.REPERMISSION,
                    item_id=SUNSET_ITEM,
                    due_at=now,
                    subscriber_id=sid,
                )
                for sid, _ in plan.ask
            ],
            now=now,
        )
        if plan.ask:
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_([sid for sid, _ in plan.ask]))
                .values(sunset_notice_at=now, updated_at=now)
            )
        if plan.revive:
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_([sid for sid, _ in plan.revive]))
                .values(sunset_notice_at=None, updated_at=now)
            )
        for sid, _ in plan.retire:
            subscriber = session.get(Subscriber, sid)
            assert subscriber is not None
            subscriber.sunset_notice_at = None
            withdraw(
                session,
                subscriber,
                now=now,
                source="sunset: no engagement after the re-permission email",
                status=SubscriberStatus.INACTIVE,
            )
    if plan.ask or plan.retire:
        log.info("sunset: %s", plan.as_dict())
    return plan


def sunset_job(app: App, now: datetime) -> dict[str, Any]:
    """The ``sunset`` job: off unless NEWSLETTER_SUNSET_DAYS is set; a refusal is logged."""
    if not app.settings.sunset_days:
        return {"enabled": False}
    try:
        return run_sunset(app, now=now).as_dict()
    except SunsetRefused as exc:
        log.warning("sunset: %s", exc)
        return {"refused": str(exc)}


def subscriber_for_keep_token(app: App, token: str) -> Subscriber | None:
    """Raises ``TokenError`` for a forged token; None when the subscriber was forgotten."""
    public_id = read_keep_token(token, keys=app.settings.secret_keys)
    with app.sessions() as session:
        return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def keep_subscribed(app: App, token: str, *, ip: str | None, now: datetime) -> str:
    """The keep button: a human engagement; an ``inactive`` subscriber is active again.

    Returns the subscriber's status afterwards (``gone`` when forgotten).
    """
    public_id = read_keep_token(token, keys=app.settings.secret_keys)
    with transaction(app.sessions) as session:
        subscriber = session.scalar(
            select(Subscriber).where(Subscriber.public_id == public_id).with_for_update()
        )
        if subscriber is None:
            return "gone"
        if subscriber.status == SubscriberStatus.INACTIVE.value:
            activate(app, session, subscriber, now=now, ip=ip, source="sunset keep button")
        if subscriber.status == SubscriberStatus.ACTIVE.value:
            subscriber.sunset_notice_at = None
            record(
                session,
                [
                    Engagement(
                        kind=KEEP,
                        at=now,
                        human=True,
                        reason="keep button",
                        source="keep",
                        subscriber_id=subscriber.id,
                    )
                ],
            )
        return subscriber.status
