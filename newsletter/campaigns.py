"""Campaign use cases: create, edit, delete, schedule, send now, pause, resume, cancel, view.

States::

    draft --schedule--> scheduled --planner--> sending --planner--> sent
      |  <--(re)schedule--'   |  \\--planner (too late)--> stale --resume--> sending
      |                       |       sending <--resume-- paused <--pause--'
      '--send (now)-----------+--> sending          any unfinished state --cancel--> cancelled

Decisions:

- Only ``draft`` and ``scheduled`` campaigns (audience not frozen yet) can be edited,
  rescheduled or deleted; once a campaign has started its ledger rows are its history.
- ``pause`` works on ``scheduled`` and ``sending`` campaigns; ``resume`` brings a paused
  campaign back (``sending`` if it had started, else ``scheduled``) and starts a ``stale``
  one now (its rows are due at once, so the late start is the marketer's explicit choice).
- ``cancel`` marks every still-queued row ``skipped`` right away (rows already leased or
  being handed to the provider finish); what was sent stays recorded.
- ``send`` starts the campaign at once and freezes its audience; the ``deliver`` job (from
  ``serve``, ``worker`` or ``tick``) sends the rows, like any other delivery.
- Test sends are ledger rows of kind ``test`` addressed to ``to_email``, rendered for a
  sample subscriber, with no ``campaign_id`` (so they never count in campaign numbers and
  are sent even while the campaign is paused); each run gets fresh keys, so a test can be
  repeated.
- Drips during a campaign: a subscriber due a drip step the same day gets both, unless the
  campaign was created with ``--pause-drips``; then the drip planner
  (``newsletter/drip/planner.py``) holds that subscriber's step while the campaign email is
  due around the same day.
- Transactional items (``system/confirmation``) cannot be campaigns: they carry no
  unsubscribe footer.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash, normalize_email
from newsletter.app import App
from newsletter.campaign_audience import audience_zones, count_audience
from newsletter.campaign_planner import freeze_audience
from newsletter.campaign_schedule import (
    Segment,
    check_window,
    format_wall,
    local_instants,
    make_segment,
    parse_at,
    wall_to_utc,
    zone,
)
from newsletter.campaign_views import (
    CampaignView,
    find_campaign,
    segment_of,
    show_campaign,
    view_of,
)
from newsletter.db import transaction
from newsletter.errors import CampaignError
from newsletter.ledger import NewDelivery, enqueue
from newsletter.models import Campaign, CampaignState, Delivery, DeliveryKind, DeliveryStatus

EDITABLE = (CampaignState.DRAFT.value, CampaignState.SCHEDULED.value)
FINISHED = (CampaignState.SENT.value, CampaignState.CANCELLED.value)
MAX_NAME = 200


@dataclass(frozen=True)
class TestOutcome:
    email: str
    status: str
    error: str | None


# ---- drafts -------------------------------------------------------------------------


def create_campaign(
    app: App,
    item_id: str,
    *,
    name: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    pause_drips: bool,
    now: datetime,
) -> CampaignView:
    """A draft for a segment of active subscribers; refused when the segment is empty."""
    item = _campaign_item(app, item_id)
    segment = make_segment(include, exclude)
    with transaction(app.sessions) as session:
        final_name = _new_name(session, name, default=item.slug)
        audience = _require_audience(session, segment)
        campaign = Campaign(
            name=final_name,
            item_id=item.id,
            state=CampaignState.DRAFT.value,
            include_tags=list(segment.include),
            exclude_tags=list(segment.exclude),
            pause_drips=pause_drips,
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
    new_item = _campaign_item(app, item_id).id if item_id is not None else None
    with transaction(app.sessions) as session:
        campaign = _editable(session, name, "edit")
        segment = make_segment(
            campaign.include_tags if include is None else include,
            campaign.exclude_tags if exclude is None else exclude,
        )
        audience = _require_audience(session, segment)
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
        session.delete(_editable(session, name, "delete"))


# ---- scheduling and sending ------------------------------------------------------------


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
    _require_postal_address(app)
    requested = parse_at(at)
    marketer_zone = zone(timezone or app.settings.default_timezone).key
    with transaction(app.sessions) as session:
        campaign = _editable(session, name, "schedule")
        segment = segment_of(campaign)
        audience = _require_audience(session, segment)
        if local_time:
            if requested.instant is not None:
                raise CampaignError(
                    f"--local-time needs a wall-clock time without an offset, got {at!r}; "
                    "e.g. --at '2026-12-01 09:00'"
                )
            instants = list(
                local_instants(requested.wall, audience_zones(session, segment)).values()
            )
            first, last = min(instants), max(instants)
            campaign.local_time = format_wall(requested.wall)
        else:
            first = last = requested.instant or wall_to_utc(requested.wall, marketer_zone)
            campaign.local_time = None
        check_window(first, last, now=now, max_days=app.settings.campaign_max_schedule_days)
        campaign.scheduled_at = first
        campaign.timezone = marketer_zone
        campaign.state = CampaignState.SCHEDULED.value
        campaign.updated_at = now
        return view_of(session, campaign, audience=audience)


def send_campaign_now(app: App, name: str, *, now: datetime) -> CampaignView:
    """Start a draft or scheduled campaign at once and freeze its audience into the ledger."""
    _require_postal_address(app)
    with transaction(app.sessions) as session:
        campaign = _editable(session, name, "send")
        _require_audience(session, segment_of(campaign))
        campaign.scheduled_at = now
        campaign.local_time = None
        campaign.state = CampaignState.SENDING.value
        campaign.started_at = now
        campaign.updated_at = now
        campaign_id = campaign.id
    freeze_audience(app, campaign_id, now=now)
    return show_campaign(app, name)


def send_test(
    app: App, name: str, recipients: Sequence[str], *, now: datetime
) -> list[TestOutcome]:
    """Render the campaign for a sample subscriber and send it to ``recipients`` only, now."""
    from newsletter.dispatch import deliver_due  # dispatch imports the app's adapters

    _require_postal_address(app)
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
    for _ in range(len(emails) + 10):  # older due test rows may be claimed first
        report = deliver_due(app, now=now, kinds=[DeliveryKind.TEST], limit=len(emails))
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
                    Delivery.key.in_(keys),
                    Delivery.status == DeliveryStatus.QUEUED.value,
                    Delivery.due_at <= now,
                )
            )
        )


# ---- steering ----------------------------------------------------------------------


def pause_campaign(app: App, name: str, *, now: datetime) -> CampaignView:
    """Stop claiming this campaign's rows (rows already claimed finish)."""
    allowed = (CampaignState.SCHEDULED.value, CampaignState.SENDING.value)
    return _transition(app, name, allowed, "pause", CampaignState.PAUSED, now=now)


def resume_campaign(app: App, name: str, *, now: datetime) -> CampaignView:
    """Paused -> where it was; stale -> sending now."""
    with transaction(app.sessions) as session:
        campaign = find_campaign(session, name, lock=True)
        if campaign.state == CampaignState.STALE.value:
            campaign.state = CampaignState.SENDING.value
            campaign.started_at = now
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


# ---- views -------------------------------------------------------------------------


# ---- helpers -----------------------------------------------------------------------


def _editable(session: Session, name: str, verb: str) -> Campaign:
    campaign = find_campaign(session, name, lock=True)
    if campaign.state not in EDITABLE:
        hint = {
            CampaignState.SENDING.value: "; pause or cancel it instead",
            CampaignState.PAUSED.value: "; resume or cancel it instead",
            CampaignState.STALE.value: "; resume or cancel it instead",
        }.get(campaign.state, "; create a new campaign instead")
        raise CampaignError(
            f"campaign {campaign.name!r} is {campaign.state} and cannot be changed "
            f"(only draft or scheduled campaigns can {verb}){hint}"
        )
    return campaign


def _campaign_item(app: App, item_id: str) -> _Item:
    item = app.library.item(item_id.strip())
    if item.transactional:
        raise CampaignError(
            f"{item.id!r} is a transactional email without an unsubscribe footer; "
            "pick an item from content/campaigns/ (see `newsletter content list`)"
        )
    return _Item(item.id, item.slug)


@dataclass(frozen=True)
class _Item:
    id: str
    slug: str


def _new_name(session: Session, name: str | None, *, default: str) -> str:
    if name is not None:
        cleaned = name.strip()
        if not cleaned or len(cleaned) > MAX_NAME:
            raise CampaignError(f"give --name a name of 1 to {MAX_NAME} characters")
        if session.scalar(select(Campaign.id).where(Campaign.name == cleaned)) is not None:
            raise CampaignError(
                f"a campaign named {cleaned!r} exists; pick another --name "
                "(see `newsletter campaign list`)"
            )
        return cleaned
    taken = set(session.scalars(select(Campaign.name).where(Campaign.name.like(f"{default}%"))))
    candidate, n = default, 1
    while candidate in taken:
        n += 1
        candidate = f"{default}-{n}"
    return candidate


def _require_audience(session: Session, segment: Segment) -> int:
    audience = count_audience(session, segment)
    if audience == 0:
        raise CampaignError(
            f"no active subscriber matches ({segment.describe()}); check the tags with "
            "`newsletter subscribers list --status active --tag TAG`"
        )
    return audience


def _require_postal_address(app: App) -> None:
    if not app.settings.postal_address.strip():
        raise CampaignError(
            "NEWSLETTER_POSTAL_ADDRESS is not set: every marketing email must show your postal "
            "address; set it (e.g. in .env) and run again"
        )
