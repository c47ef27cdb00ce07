"""Starting campaigns: schedule, send now, and test sends to seed addresses."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.bound_lists import unindexed
from newsletter.campaigns.audience import audience_zones
from newsletter.campaigns.planner import freeze_audience
from newsletter.campaigns.rules import (
    editable,
    require_audience,
    require_postal_address,
    require_real_content,
)
from newsletter.campaigns.schedule import (
    check_window,
    format_wall,
    local_instants,
    parse_at,
    wall_to_utc,
    zone,
)
from newsletter.campaigns.views import (
    CampaignView,
    find_campaign,
    segment_of,
    show_campaign,
    view_of,
)
from newsletter.db import transaction
from newsletter.errors import CampaignError
from newsletter.ledger import NewDelivery, enqueue, worker_name
from newsletter.models import CampaignState, Delivery, DeliveryKind, DeliveryStatus
from newsletter.webhooks.emit import campaign_changed


@dataclass(frozen=True)
class TestOutcome:
    email: str
    status: str
    error: str | None


def schedule_campaign(
    app: App,
    name: str,
    *,
    at: str,
    timezone: str | None,
    local_time: bool,
    now: datetime,
) -> CampaignView:
    """Schedule at a wall time in ``timezone`` (default zone), or in each subscriber's zone."""
    require_postal_address(app)
    requested = parse_at(at)
    marketer_zone = zone(timezone or app.settings.default_timezone).key
    with transaction(app.sessions) as session:
        campaign = editable(session, name, "schedule")
        require_real_content(app, campaign.item_id)
        segment = segment_of(campaign)
        audience = require_audience(session, segment)
        if local_time:
            if requested.instant is not None:
                raise CampaignError(
                    f"--local-time needs a wall-clock time without an offset, got {at!r}; "
                    "e.g. --at '2026-12-01 09:00'"
                )
            by_zone = local_instants(requested.wall, audience_zones(session, segment))
            shown_zone = min(by_zone, key=by_zone.__getitem__)  # the first to reach it
            first, last = by_zone[shown_zone], max(by_zone.values())
            campaign.local_time = format_wall(requested.wall)
        else:
            first = last = requested.instant or wall_to_utc(requested.wall, marketer_zone)
            shown_zone = marketer_zone
            campaign.local_time = None
        check_window(
            first,
            last,
            now=now,
            max_days=app.settings.campaign_max_schedule_days,
            zone_name=shown_zone,
        )
        campaign.scheduled_at = first
        campaign.timezone = marketer_zone
        campaign.state = CampaignState.SCHEDULED.value
        campaign.updated_at = now
        return view_of(session, campaign, audience=audience)


def send_campaign_now(app: App, name: str, *, now: datetime) -> CampaignView:
    """Start a draft or scheduled campaign at once and freeze its audience into the ledger."""
    require_postal_address(app)
    with transaction(app.sessions) as session:
        campaign = editable(session, name, "send")
        require_audience(session, segment_of(campaign))
        campaign.scheduled_at = now
        campaign.local_time = None
        campaign.state = CampaignState.SENDING.value
        campaign.started_at = now
        campaign.updated_at = now
        campaign_id = campaign.id
        campaign_changed(session, "campaign.started", campaign, now=now)
    freeze_audience(app, campaign_id, now=now)
    return show_campaign(app, name)


def send_test(
    app: App, name: str, recipients: Sequence[str], *, now: datetime
) -> list[TestOutcome]:
    """Render the campaign for a sample subscriber and send it to ``recipients`` only, now."""
    from newsletter.dispatch import deliver_due  # dispatch imports the app's adapters

    require_postal_address(app)
    emails = list(dict.fromkeys(normalize_email(r) for r in recipients))
    if not emails:
        raise CampaignError("give at least one address with --to EMAIL")
    run = secrets.token_hex(6)
    with transaction(app.sessions) as session:
        campaign = find_campaign(session, name)
        app.library.item(campaign.item_id)  # fails early if the item was removed
        rows = [
            NewDelivery(
                key=f"test:{campaign.id}:{run}:{email_hash(e)[:24]}",
                kind=DeliveryKind.TEST,
                item_id=campaign.item_id,
                due_at=now,
                to_email=e,
            )
            for e in emails
        ]
        enqueue(session, rows, now=now)
    keys = [r.key for r in rows]
    worker = worker_name("test-send")  # a name no other process shares
    for _ in range(len(emails) + 10):  # older due test rows may be claimed first
        report = deliver_due(
            app, now=now, kinds=[DeliveryKind.TEST], limit=len(emails), worker=worker
        )
        if report.claimed == 0 or not _queued_due(app, keys, now=now):
            break
    with app.sessions() as session:
        found = session.execute(
            select(Delivery.to_email, Delivery.status, Delivery.error).where(Delivery.key.in_(keys))
        )
        by_email = {e: (status, error) for e, status, error in found if e is not None}
    return [TestOutcome(e, *by_email.get(e, ("missing", None))) for e in emails]


def _queued_due(app: App, keys: list[str], *, now: datetime) -> bool:
    with app.sessions() as session:
        return bool(
            session.scalar(
                select(func.count()).where(
                    Delivery.key.in_(keys),  # by key, not every due queued row (SQLite)
                    unindexed(session, Delivery.status) == DeliveryStatus.QUEUED.value,
                    unindexed(session, Delivery.due_at) <= now,
                )
            )
        )
