"""Campaign drafts: create, edit and delete a campaign that has not started."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.campaigns.audience import audience_zones
from newsletter.campaigns.rules import campaign_item, editable, new_name, require_audience
from newsletter.campaigns.schedule import Segment, check_window, local_instants, make_segment
from newsletter.campaigns.views import CampaignView, view_of
from newsletter.db import transaction
from newsletter.errors import CampaignError
from newsletter.models import Campaign, CampaignState


def create_campaign(
    app: App,
    item_id: str,
    *,
    name: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    pause_drips: bool,
    now: datetime,
    priority: str = "normal",
    topic: str | None = None,
    where: Sequence[str] = (),
) -> CampaignView:
    """A draft for a segment of active subscribers; refused when the segment is empty.

    ``priority`` (high, normal, low) decides who wins a slot of the marketing cap;
    ``topic`` names a topic of ``content/topics.yaml`` (default: the item's topic);
    ``where`` holds ``NAME=VALUE`` custom-field conditions (``--where``)."""
    from newsletter.attention.campaign_rules import check_priority, check_topic

    rank = check_priority(priority)
    topic = check_topic(app, topic)
    item = campaign_item(app, item_id)
    segment = make_segment(include, exclude, where)
    with transaction(app.sessions) as session:
        final_name = new_name(session, name, default=item.slug)
        audience = require_audience(session, segment)
        campaign = Campaign(
            name=final_name,
            item_id=item.id,
            state=CampaignState.DRAFT.value,
            include_tags=list(segment.include),
            exclude_tags=list(segment.exclude),
            where_attributes=dict(segment.where) or None,
            pause_drips=pause_drips,
            priority=rank,
            topic=topic,
            timezone=app.settings.default_timezone,
            audience_cursor=0,
            audience_frozen=False,
            audience_count=0,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        session.flush()
        return view_of(session, campaign, audience=audience)


STARTED = (
    CampaignState.SENDING.value,
    CampaignState.PAUSED.value,
    CampaignState.STALE.value,
    CampaignState.SENT.value,
)


def earlier_sends(
    app: App, item_id: str, *, include: Sequence[str], exclude: Sequence[str]
) -> list[str]:
    """Names of started campaigns that sent ``item_id`` to the same segment (read only).

    ``campaign create`` warns and asks before making another: it would send the item again
    to everyone who got it.
    """
    item = campaign_item(app, item_id)
    segment = make_segment(include, exclude)
    with app.sessions() as session:
        found = session.execute(
            select(Campaign.name, Campaign.include_tags, Campaign.exclude_tags)
            .where(Campaign.item_id == item.id, Campaign.state.in_(STARTED))
            .order_by(Campaign.id)
        ).all()
    return [
        name
        for name, inc, exc in found
        if make_segment(inc or (), exc or ()) == segment
        or (set(inc or ()), set(exc or ())) == (set(segment.include), set(segment.exclude))
    ]


def edit_campaign(
    app: App,
    name: str,
    *,
    item_id: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    pause_drips: bool | None = None,
    now: datetime,
) -> CampaignView:
    """Change a draft or scheduled campaign; ``None`` keeps a field as it is."""
    new_item = campaign_item(app, item_id).id if item_id is not None else None
    with transaction(app.sessions) as session:
        campaign = editable(session, name, "edit")
        segment = make_segment(
            campaign.include_tags if include is None else include,
            campaign.exclude_tags if exclude is None else exclude,
            [f"{k}={v}" for k, v in (campaign.where_attributes or {}).items()],
        )
        audience = require_audience(session, segment)
        start = campaign.scheduled_at
        if campaign.local_time is not None:  # the first zone may have changed
            start = _local_start(app, session, campaign, campaign.local_time, segment, now=now)
        # every check passed: only now change the row
        if new_item is not None:
            campaign.item_id = new_item
        campaign.include_tags = list(segment.include)
        campaign.exclude_tags = list(segment.exclude)
        if pause_drips is not None:
            campaign.pause_drips = pause_drips
        campaign.scheduled_at = start
        campaign.updated_at = now
        return view_of(session, campaign, audience=audience)


def _local_start(
    app: App,
    session: Session,
    campaign: Campaign,
    local_time: str,
    segment: Segment,
    *,
    now: datetime,
) -> datetime:
    """The first instant of a ``--local-time`` campaign for ``segment``'s zones as they are.

    A new audience can bring an earlier zone and so move the start; a start in the past would
    make the campaign stale (or send late), so the edit is refused instead, like ``schedule``
    refuses it (``check_window``, the max-days limit included).
    """
    wall = datetime.fromisoformat(local_time)
    instants = local_instants(wall, audience_zones(session, segment))
    first_zone = min(instants, key=instants.__getitem__)
    first, last = instants[first_zone], max(instants.values())
    problem = (
        f"campaign {campaign.name!r} not changed: {local_time} in {first_zone} (the earliest "
        f"zone of the edited audience) is {_minutes(first)} UTC"
    )
    if first != campaign.scheduled_at:
        problem += f", which would move the start from {_minutes(campaign.scheduled_at)} UTC"
    if first < now:
        raise CampaignError(
            f"{problem}, in the past (now {_minutes(now)} UTC); reschedule it with a later "
            f"time (`newsletter campaign schedule {campaign.name} --at 'YYYY-MM-DD HH:MM' "
            f"--local-time`) and edit again, or send it now with "
            f"`newsletter campaign send {campaign.name}`"
        )
    try:
        check_window(first, last, now=now, max_days=app.settings.campaign_max_schedule_days)
    except CampaignError as exc:
        raise CampaignError(f"{problem}; {exc}") from None
    return first


def _minutes(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M")


def delete_campaign(app: App, name: str) -> None:
    """Delete a campaign that has not started (its test sends stay in the ledger)."""
    with transaction(app.sessions) as session:
        session.delete(editable(session, name, "delete"))
