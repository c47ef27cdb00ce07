"""Read side of campaigns: what ``campaign list`` and ``campaign show`` print.

The audience of a campaign that has not started is counted live from its segment; once it
started, it is the number of rows frozen into the ledger. Counts are ``campaign`` rows of the
ledger by status (test sends are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.campaigns.audience import count_audience
from newsletter.campaigns.schedule import Segment, segment_from
from newsletter.errors import CampaignNotFound
from newsletter.models import Campaign, Delivery, DeliveryKind, DeliveryStatus


@dataclass(frozen=True)
class CampaignView:
    """Everything ``campaign list`` / ``show`` print about one campaign."""

    name: str
    item_id: str
    state: str
    segment: Segment
    pause_drips: bool
    scheduled_at: datetime | None
    local_time: str | None
    timezone: str
    audience: int  # frozen rows once started, else the segment's size now
    audience_frozen: bool
    counts: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    priority: int = 2  # newsletter.attention: 3 high, 2 normal, 1 low
    topic: str | None = None
    # Rows the marketing cap moved (``deferred``, still queued) or skipped (``stale``: moved
    # past NEWSLETTER_CAMPAIGN_STALE_HOURS; ``opted_out``: the topic was opted out of).
    attention: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(
            self.counts.get(s.value, 0)
            for s in (
                DeliveryStatus.SENT,
                DeliveryStatus.FAILED,
                DeliveryStatus.UNKNOWN,
                DeliveryStatus.SKIPPED,
            )
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def list_campaigns(app: App) -> list[CampaignView]:
    with app.sessions() as session:
        campaigns = list(
            session.scalars(select(Campaign).order_by(Campaign.created_at, Campaign.id))
        )
        counts: dict[int, dict[str, int]] = {}
        grouped = session.execute(
            select(Delivery.campaign_id, Delivery.status, func.count())
            .where(Delivery.kind == DeliveryKind.CAMPAIGN.value, Delivery.campaign_id.is_not(None))
            .group_by(Delivery.campaign_id, Delivery.status)
        )
        for campaign_id, status, n in grouped:
            if campaign_id is not None:
                counts.setdefault(campaign_id, {})[status] = int(n)
        return [view_of(session, c, counts=counts.get(c.id, {})) for c in campaigns]


def provider_stats(app: App, name: str) -> dict[str, Any]:
    """Delivered, opens, clicks, bounces... from provider events (``newsletter.stats``)."""
    from newsletter.stats import campaign_stats

    with app.sessions() as session:
        return campaign_stats(session, find_campaign(session, name).id)


def show_campaign(app: App, name: str) -> CampaignView:
    with app.sessions() as session:
        return view_of(session, find_campaign(session, name))


def view_of(
    session: Session,
    campaign: Campaign,
    *,
    audience: int | None = None,
    counts: dict[str, int] | None = None,
) -> CampaignView:
    started = campaign.started_at is not None
    if audience is None:
        audience = (
            campaign.audience_count if started else count_audience(session, segment_of(campaign))
        )
    if counts is None:
        counts = {
            status: int(n)
            for status, n in session.execute(
                select(Delivery.status, func.count())
                .where(
                    Delivery.campaign_id == campaign.id,
                    Delivery.kind == DeliveryKind.CAMPAIGN.value,
                )
                .group_by(Delivery.status)
            )
        }
    return CampaignView(
        name=campaign.name,
        item_id=campaign.item_id,
        state=campaign.state,
        segment=segment_of(campaign),
        pause_drips=campaign.pause_drips,
        scheduled_at=campaign.scheduled_at,
        local_time=campaign.local_time,
        timezone=campaign.timezone or "UTC",
        audience=audience,
        audience_frozen=campaign.audience_frozen,
        counts=counts,
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        priority=campaign.priority,
        topic=campaign.topic,
        attention=attention_counts(session, campaign.id),
    )


def attention_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Deferred (still queued), skipped past the staleness limit, skipped as opted out."""
    from newsletter.attention.views import campaign_attention

    return campaign_attention(session, campaign_id)


def segment_of(campaign: Campaign) -> Segment:
    return segment_from(
        campaign.include_tags or (), campaign.exclude_tags or (), campaign.where_attributes
    )


def find_campaign(session: Session, name: str, *, lock: bool = False) -> Campaign:
    statement = select(Campaign).where(Campaign.name == name.strip())
    if lock:
        statement = statement.with_for_update()
    campaign = session.scalar(statement)
    if campaign is None:
        raise CampaignNotFound(name)
    return campaign
