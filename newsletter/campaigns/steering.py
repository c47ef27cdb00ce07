"""Steering a campaign: pause, resume, cancel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from newsletter.app import App
from newsletter.campaigns.rules import FINISHED, require_real_content
from newsletter.campaigns.views import CampaignView, find_campaign, view_of
from newsletter.db import transaction
from newsletter.errors import CampaignError
from newsletter.models import CampaignState, Delivery, DeliveryKind, DeliveryStatus
from newsletter.webhooks.emit import campaign_changed


def pause_campaign(app: App, name: str, *, now: datetime) -> CampaignView:
    """Stop claiming this campaign's rows (rows already claimed finish)."""
    allowed = (CampaignState.SCHEDULED.value, CampaignState.SENDING.value)
    return _transition(app, name, allowed, "pause", CampaignState.PAUSED, now=now)


def resume_campaign(app: App, name: str, *, now: datetime) -> CampaignView:
    """Paused -> where it was; stale -> sending now."""
    with transaction(app.sessions) as session:
        campaign = find_campaign(session, name, lock=True)
        require_real_content(app, campaign.item_id)
        if campaign.state == CampaignState.STALE.value:
            campaign.state = CampaignState.SENDING.value
            campaign.started_at = now
            campaign_changed(session, "campaign.started", campaign, now=now)
        elif campaign.state == CampaignState.PAUSED.value:
            started = campaign.started_at is not None
            campaign.state = (CampaignState.SENDING if started else CampaignState.SCHEDULED).value
        else:
            raise CampaignError(
                f"campaign {name!r} is {campaign.state}; only paused or stale campaigns "
                "can be resumed"
            )
        campaign.updated_at = now
        return view_of(session, campaign)


def cancel_campaign(app: App, name: str, *, now: datetime) -> CampaignView:
    """Stop for good: queued rows become ``skipped``; sent ones stay recorded."""
    with transaction(app.sessions) as session:
        campaign = find_campaign(session, name, lock=True)
        if campaign.state in FINISHED:
            raise CampaignError(f"campaign {name!r} is already {campaign.state}; nothing to cancel")
        campaign.state = CampaignState.CANCELLED.value
        campaign.finished_at = now
        campaign.updated_at = now
        session.execute(
            update(Delivery)
            .where(
                Delivery.campaign_id == campaign.id,
                Delivery.kind == DeliveryKind.CAMPAIGN.value,
                Delivery.status == DeliveryStatus.QUEUED.value,
            )
            .values(status=DeliveryStatus.SKIPPED.value, error="campaign cancelled", updated_at=now)
        )
        campaign_changed(session, "campaign.finished", campaign, now=now)
        return view_of(session, campaign)


def _transition(
    app: App,
    name: str,
    allowed: tuple[str, ...],
    verb: str,
    target: CampaignState,
    *,
    now: datetime,
) -> CampaignView:
    with transaction(app.sessions) as session:
        campaign = find_campaign(session, name, lock=True)
        if campaign.state not in allowed:
            raise CampaignError(
                f"campaign {name!r} is {campaign.state}; only {' or '.join(allowed)} "
                f"campaigns can {verb}"
            )
        campaign.state = target.value
        campaign.updated_at = now
        return view_of(session, campaign)
