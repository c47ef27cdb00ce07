"""Email stats per sequence step and per campaign, from the ledger and the email events.

Sent, delivered, opens, clicks, bounces, spam reports and unsubscribes, with rates.

Two GROUP BY queries per view (the ledger for ``sent``, the events joined to the ledger
for the rest); no Python loop over deliveries or events. Decisions:

* A row's numbers describe a cohort: the emails *sent* (``deliveries.status = sent``,
  ``sent_at >= since``) and what happened to those emails, whenever it happened.
* Event counts are unique per email: ``opens`` is how many emails were opened at least
  once (not how many times), the same for clicks, bounces, spam reports, unsubscribes.
  ``bounces`` counts ``bounce`` events of both types (hard and blocked); ``dropped``
  emails are not counted as bounces.
* Opens and clicks are human: ``machine_opens`` and ``machine_clicks`` count, beside
  them, the emails opened or clicked by a machine (Apple Mail Privacy Protection, link
  scanners, ... see ``newsletter.tracking.classify``). They come from
  ``engagement_events``: our own pixel and redirects and SendGrid's events, merged; one
  email opened through both still counts once. Bounces and complaints from SMTP and
  bounce reports are counted with SendGrid's the same way.
* Rates: ``delivered_rate`` and ``bounce_rate`` are over ``sent``; ``open_rate``,
  ``click_rate``, ``spam_rate`` and ``unsubscribe_rate`` are over ``delivered`` when any
  ``delivered`` event was received, else over ``sent`` (when SendGrid is told not to post
  ``delivered`` events, ``sent`` is the best base there is). A rate is ``None`` over zero.
* ``flagged`` is true when the spam-report rate passes ``SPAM_FLAG_RATE`` (0.1%, the
  bulk-sender ceiling the large mailbox providers publish).
* ``unsubscribes`` counts the emails that got a SendGrid ``unsubscribe`` or
  ``group_unsubscribe`` event *or* whose own unsubscribe link was used (a ``withdrawn``
  consent event naming the delivery, from the link's ``?d=``); both for one email count
  once. The consent events are read as one more event source (``UNION ALL``), so the
  same ``count(DISTINCT ...)`` deduplicates across sources. A link unsubscribe is lost from
  the numbers when the subscriber is later forgotten (their consent log is erased).
* Test sends are left out; drip emails of a forgotten subscriber lose their enrollment
  and appear under sequence ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Subquery,
    and_,
    case,
    distinct,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from newsletter.engagement import BOUNCE, CLICK, COMPLAINT, OPEN, SOFT_BOUNCE
from newsletter.models import (
    Campaign,
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EngagementEvent,
    Enrollment,
    ProviderEvent,
)

SPAM_FLAG_RATE = 0.001

_Key = ColumnElement[Any] | InstrumentedAttribute[Any]

# SendGrid opens and clicks are mirrored into ``engagement_events`` with their machine /
# human verdict (``newsletter.tracking.provider``) and counted from there.
MIRRORED = ("open", "click")
# The event name given to withdrawals through our own link (never a SendGrid event name).
LINK_UNSUBSCRIBE = "link_unsubscribe"
EVENT_COUNTS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opens": ("open",),
    "machine_opens": ("machine_open",),
    "clicks": ("click",),
    "machine_clicks": ("machine_click",),
    "bounces": ("bounce",),
    "spam_reports": ("spamreport",),
    "unsubscribes": ("unsubscribe", "group_unsubscribe", LINK_UNSUBSCRIBE),
}
COUNTS = ("sent", *EVENT_COUNTS)
RATES = (
    "delivered_rate",
    "open_rate",
    "click_rate",
    "bounce_rate",
    "spam_rate",
    "unsubscribe_rate",
)


@dataclass(frozen=True)
class Counts:
    sent: int = 0
    delivered: int = 0
    opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    machine_clicks: int = 0
    bounces: int = 0
    spam_reports: int = 0
    unsubscribes: int = 0

    def rates(self) -> dict[str, float | None]:
        reach = self.delivered or self.sent
        return {
            "delivered_rate": _rate(self.delivered, self.sent),
            "open_rate": _rate(self.opens, reach),
            "click_rate": _rate(self.clicks, reach),
            "bounce_rate": _rate(self.bounces, self.sent),
            "spam_rate": _rate(self.spam_reports, reach),
            "unsubscribe_rate": _rate(self.unsubscribes, reach),
        }

    def as_dict(self) -> dict[str, Any]:
        rates = self.rates()
        spam = rates["spam_rate"]
        return {
            **{name: getattr(self, name) for name in COUNTS},
            **rates,
            "flagged": spam is not None and spam > SPAM_FLAG_RATE,
        }


@dataclass(frozen=True)
class StatsReport:
    since: datetime | None
    sequences: list[dict[str, Any]]
    campaigns: list[dict[str, Any]]

    def flagged(self) -> list[dict[str, Any]]:
        return [row for row in (*self.sequences, *self.campaigns) if row["flagged"]]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _email_events() -> Subquery:
    """``(delivery_id, event)``: SendGrid events, plus link unsubscribes as one more kind."""
    link = select(
        ConsentEvent.delivery_id.label("delivery_id"),
        literal(LINK_UNSUBSCRIBE, String()).label("event"),
    ).where(
        ConsentEvent.kind == ConsentKind.WITHDRAWN.value,
        ConsentEvent.delivery_id.is_not(None),
    )
    sendgrid = select(ProviderEvent.delivery_id, ProviderEvent.event).where(
        ProviderEvent.delivery_id.is_not(None),
        ProviderEvent.event.not_in(MIRRORED),  # counted from engagement_events
    )
    engaged = select(
        EngagementEvent.delivery_id,
        case(
            (and_(EngagementEvent.kind == OPEN, EngagementEvent.human), literal("open")),
            (EngagementEvent.kind == OPEN, literal("machine_open")),
            (and_(EngagementEvent.kind == CLICK, EngagementEvent.human), literal("click")),
            (EngagementEvent.kind == CLICK, literal("machine_click")),
            (EngagementEvent.kind.in_([BOUNCE, SOFT_BOUNCE]), literal("bounce")),
            (EngagementEvent.kind == COMPLAINT, literal("spamreport")),
            else_=EngagementEvent.kind,
        ).label("event"),
    ).where(EngagementEvent.delivery_id.is_not(None))
    return union_all(sendgrid, link, engaged).subquery("email_events")


def _event_columns(events: Subquery) -> list[ColumnElement[int]]:
    """``count(DISTINCT CASE WHEN event IN (...) THEN delivery_id END)`` per metric."""
    return [
        func.count(distinct(case((events.c.event.in_(names), events.c.delivery_id)))).label(metric)
        for metric, names in EVENT_COUNTS.items()
    ]


def _grouped(
    session: Session,
    keys: Sequence[_Key],
    scope: Sequence[ColumnElement[bool]],
    *,
    join_enrollment: bool = False,
    join_campaign: bool = False,
) -> dict[tuple[Any, ...], Counts]:
    """Run the ledger and the event aggregate for one grouping; merge by group key."""

    def base(statement: Select[Any]) -> Select[Any]:
        if join_enrollment:
            statement = statement.outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
        if join_campaign:
            statement = statement.join(Campaign, Campaign.id == Delivery.campaign_id)
        return statement.where(*scope).group_by(*keys)

    sent = base(
        select(*keys, func.count().label("sent"))
        .select_from(Delivery)
        .where(Delivery.status == DeliveryStatus.SENT.value)
    )
    email_events = _email_events()
    events = base(
        select(*keys, *_event_columns(email_events))
        .select_from(email_events)
        .join(Delivery, Delivery.id == email_events.c.delivery_id)
    )
    merged: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in session.execute(sent):
        merged.setdefault(tuple(row[: len(keys)]), {})["sent"] = int(row.sent)
    for row in session.execute(events):
        values = merged.setdefault(tuple(row[: len(keys)]), {})
        for metric in EVENT_COUNTS:
            values[metric] = int(getattr(row, metric))
    return {key: Counts(**values) for key, values in merged.items()}


def _since(since: datetime | None) -> list[ColumnElement[bool]]:
    return [Delivery.sent_at >= since] if since is not None else []


def step_number(step: int | None) -> int | str:
    """The step as shown to people and scripts: 1 for the first; ``"then"`` for a rotation
    item (stored as None or negative). Stored steps are 0-based indexes."""
    return "then" if step is None or step < 0 else step + 1


def numbered_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stats rows with ``step`` as ``step_number`` gives it (CLI JSON, the API)."""
    return [{**row, "step": step_number(row["step"])} for row in rows]


def _step_rows(grouped: dict[tuple[Any, ...], Counts]) -> list[dict[str, Any]]:
    def order(key: tuple[Any, ...]) -> tuple[str, int, str]:
        sequence, step, item = key
        return (sequence or "\uffff", step if step is not None and step >= 0 else 10**9, item)

    return [
        {"sequence": key[0], "step": key[1], "item": key[2], **grouped[key].as_dict()}
        for key in sorted(grouped, key=order)
    ]


def sequence_stats(
    session: Session, sequence_name: str, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    """One dict per step of one sequence (``step`` is the 0-based index, -1 the rotation)."""
    grouped = _grouped(
        session,
        [Enrollment.sequence, Delivery.step, Delivery.item_id],
        [
            Delivery.kind == DeliveryKind.DRIP.value,
            Enrollment.sequence == sequence_name,
            *_since(since),
        ],
        join_enrollment=True,
    )
    return _step_rows(grouped)


def all_sequence_stats(session: Session, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every sequence step that has sent something."""
    grouped = _grouped(
        session,
        [Enrollment.sequence, Delivery.step, Delivery.item_id],
        [Delivery.kind == DeliveryKind.DRIP.value, *_since(since)],
        join_enrollment=True,
    )
    return _step_rows(grouped)


def campaign_stats(
    session: Session, campaign_id: int, *, since: datetime | None = None
) -> dict[str, Any]:
    """The numbers of one campaign (zeros before it sends). Test sends are left out."""
    grouped = _grouped(
        session,
        [Delivery.campaign_id],
        [
            Delivery.kind == DeliveryKind.CAMPAIGN.value,
            Delivery.campaign_id == campaign_id,
            *_since(since),
        ],
    )
    return grouped.get((campaign_id,), Counts()).as_dict()


def all_campaign_stats(session: Session, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every campaign that has sent something, oldest start first."""
    grouped = _grouped(
        session,
        [Delivery.campaign_id, Campaign.name, Campaign.item_id, Campaign.started_at],
        [Delivery.kind == DeliveryKind.CAMPAIGN.value, *_since(since)],
        join_campaign=True,
    )

    def order(key: tuple[Any, ...]) -> tuple[bool, float, str]:
        started: datetime | None = key[3]
        return (started is None, started.timestamp() if started else 0.0, key[1])

    return [
        {"campaign": key[1], "item": key[2], **grouped[key].as_dict()}
        for key in sorted(grouped, key=order)
    ]


def stats_report(session: Session, *, since: datetime | None = None) -> StatsReport:
    return StatsReport(
        since=since,
        sequences=all_sequence_stats(session, since=since),
        campaigns=all_campaign_stats(session, since=since),
    )
