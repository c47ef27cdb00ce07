"""The ``plan-campaigns`` job: start due campaigns, freeze audiences, finish campaigns.

One pass does three things, each in short transactions that lock the campaign row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer anyway), so two planners
running at once neither double-start a campaign nor lose the cursor:

1. ``scheduled`` campaigns whose start has come become ``sending`` - or ``stale`` when the
   start is older than ``NEWSLETTER_CAMPAIGN_STALE_HOURS`` (after an outage); a stale
   campaign waits for ``newsletter campaign resume`` instead of going out hours late.
2. Started campaigns (``sending`` or ``paused``) whose audience is not frozen yet get their
   ledger rows, ``batch_size`` subscribers per transaction, keyset-paginated on subscriber id
   (``audience_cursor``), until the whole segment is in the ledger. Rows are claimable as
   soon as their batch commits. A campaign is frozen once: subscribers who join later are
   not added; those who leave before their row is claimed are skipped at claim time.
3. A ``sending`` campaign whose audience is frozen and that has no ``queued``, ``leased``
   or ``sending`` row left becomes ``sent``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.campaigns.audience import batch_upper_bound, freeze_range, range_zones
from newsletter.campaigns.schedule import Segment, is_stale, local_instants, segment_from, zone
from newsletter.db import transaction
from newsletter.errors import CampaignError
from newsletter.models import Campaign, CampaignState, Delivery, DeliveryKind, DeliveryStatus
from newsletter.webhooks.emit import campaign_changed

log = logging.getLogger(__name__)

FREEZE_BATCH = 5000
STARTED = (CampaignState.SENDING.value, CampaignState.PAUSED.value)
IN_FLIGHT = (DeliveryStatus.QUEUED.value, DeliveryStatus.LEASED.value, DeliveryStatus.SENDING.value)


def plan_campaigns(app: App, now: datetime, *, batch_size: int = FREEZE_BATCH) -> dict[str, Any]:
    """One planner pass (see the module docstring); returns counts for the log line."""
    started, stale = start_due(app, now=now)
    queued = 0
    with app.sessions() as session:
        unfrozen = list(
            session.scalars(
                select(Campaign.id)
                .where(Campaign.state.in_(STARTED), Campaign.audience_frozen.is_(False))
                .order_by(Campaign.scheduled_at, Campaign.id)
            )
        )
    for campaign_id in unfrozen:
        queued += freeze_audience(app, campaign_id, now=now, batch_size=batch_size)
    finished = finish_sent(app, now=now)
    return {"started": started, "stale": stale, "queued": queued, "finished": finished}


def start_due(app: App, *, now: datetime) -> tuple[int, int]:
    """Scheduled campaigns whose time has come: ``sending``, or ``stale`` if too late."""
    started = stale = 0
    with app.sessions() as session:
        due = list(
            session.scalars(
                select(Campaign.id).where(
                    Campaign.state == CampaignState.SCHEDULED.value, Campaign.scheduled_at <= now
                )
            )
        )
    for campaign_id in due:
        with transaction(app.sessions) as session:
            campaign = _locked(session, campaign_id)
            if campaign is None or campaign.state != CampaignState.SCHEDULED.value:
                continue
            assert campaign.scheduled_at is not None
            if _is_example(app, campaign.item_id):
                # Marked ``example: true`` after it was scheduled: it never goes out.
                campaign.state = CampaignState.PAUSED.value
                campaign.updated_at = now
                log.warning(
                    "campaign %r sends %s, which is example content (example: true): paused; "
                    "replace the content, remove the flag, then `newsletter campaign resume %s`",
                    campaign.name,
                    campaign.item_id,
                    campaign.name,
                )
                continue
            if is_stale(
                campaign.scheduled_at, now=now, stale_hours=app.settings.campaign_stale_hours
            ):
                campaign.state = CampaignState.STALE.value
                stale += 1
                log.warning(
                    "campaign %r was due at %s, more than %s hours ago: it is stale and waits "
                    "for `newsletter campaign resume %s`",
                    campaign.name,
                    campaign.scheduled_at.isoformat(),
                    app.settings.campaign_stale_hours,
                    campaign.name,
                )
            else:
                campaign.state = CampaignState.SENDING.value
                campaign.started_at = now
                started += 1
                campaign_changed(session, "campaign.started", campaign, now=now)
            campaign.updated_at = now
    return started, stale


def _is_example(app: App, item_id: str) -> bool:
    return any(item.id == item_id and item.example for item in app.library.items())


def freeze_audience(
    app: App, campaign_id: int, *, now: datetime, batch_size: int = FREEZE_BATCH
) -> int:
    """Write the campaign's remaining audience into the ledger, one batch per transaction.
    Returns how many rows were added. Safe to run concurrently and to resume after a crash."""
    added = 0
    while True:
        with transaction(app.sessions) as session:
            campaign = _locked(session, campaign_id)
            if campaign is None or campaign.audience_frozen or campaign.state not in STARTED:
                return added
            added += _freeze_batch(session, campaign, now=now, batch_size=batch_size)
            if campaign.audience_frozen:
                return added


def _freeze_batch(session: Session, campaign: Campaign, *, now: datetime, batch_size: int) -> int:
    segment = segment_from(
        campaign.include_tags or (), campaign.exclude_tags or (), campaign.where_attributes
    )
    after = campaign.audience_cursor
    upto = batch_upper_bound(session, segment, after=after, size=batch_size)
    due = _due_at(session, campaign, segment, after=after, upto=upto)
    added = 0
    if due is not None:
        added = freeze_range(
            session,
            campaign_id=campaign.id,
            item_id=campaign.item_id,
            segment=segment,
            after=after,
            upto=upto,
            due_at=due,
            now=now,
        )
    campaign.audience_count += added
    campaign.updated_at = now
    if upto is None:
        campaign.audience_frozen = True
    else:
        campaign.audience_cursor = upto
    return added


def _due_at(
    session: Session, campaign: Campaign, segment: Segment, *, after: int, upto: int | None
) -> datetime | dict[str, datetime] | None:
    """One instant, or one per zone for ``--local-time``; None when the range is empty."""
    assert campaign.scheduled_at is not None
    if campaign.local_time is None:
        return campaign.scheduled_at
    zones = [z for z in range_zones(session, segment, after=after, upto=upto) if _known(z)]
    if not zones:
        # Nobody in range, or only unknown zones (they get the first zone's instant).
        return campaign.scheduled_at
    wall = datetime.fromisoformat(campaign.local_time)
    return local_instants(wall, zones)


def _known(name: str) -> bool:
    try:
        zone(name)
    except CampaignError:
        return False
    return True


def finish_sent(app: App, *, now: datetime) -> int:
    """Sending campaigns with a frozen audience and nothing in flight become ``sent``."""
    finished = 0
    with app.sessions() as session:
        candidates = list(
            session.scalars(
                select(Campaign.id).where(
                    Campaign.state == CampaignState.SENDING.value,
                    Campaign.audience_frozen.is_(True),
                )
            )
        )
    for campaign_id in candidates:
        with transaction(app.sessions) as session:
            campaign = _locked(session, campaign_id)
            if campaign is None or campaign.state != CampaignState.SENDING.value:
                continue
            if has_rows_in_flight(session, campaign_id):
                continue
            campaign.state = CampaignState.SENT.value
            campaign.finished_at = now
            campaign.updated_at = now
            finished += 1
            campaign_changed(session, "campaign.finished", campaign, now=now)
    return finished


def has_rows_in_flight(session: Session, campaign_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Delivery.campaign_id == campaign_id,
                    Delivery.kind == DeliveryKind.CAMPAIGN.value,
                    Delivery.status.in_(IN_FLIGHT),
                )
            )
        )
    )


def _locked(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id, with_for_update=True, populate_existing=True)
