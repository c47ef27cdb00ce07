"""Checks every campaign use case shares: editable states, items, names, audience, address."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.campaigns.audience import count_audience
from newsletter.campaigns.schedule import Segment
from newsletter.campaigns.views import find_campaign
from newsletter.errors import CampaignError
from newsletter.models import Campaign, CampaignState

EDITABLE = (CampaignState.DRAFT.value, CampaignState.SCHEDULED.value)
FINISHED = (CampaignState.SENT.value, CampaignState.CANCELLED.value)
MAX_NAME = 200
PARTICIPLES = {"edit": "edited", "schedule": "scheduled", "delete": "deleted", "send": "sent"}
SLUG = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


def editable(session: Session, name: str, verb: str) -> Campaign:
    campaign = find_campaign(session, name, lock=True)
    if campaign.state not in EDITABLE:
        hint = {
            CampaignState.SENDING.value: "; pause or cancel it instead",
            CampaignState.PAUSED.value: "; resume or cancel it instead",
            CampaignState.STALE.value: "; resume or cancel it instead",
        }.get(campaign.state, "; create a new campaign instead")
        raise CampaignError(
            f"campaign {campaign.name!r} is {campaign.state} and cannot be changed "
            f"(only draft or scheduled campaigns can be {PARTICIPLES.get(verb, verb)}){hint}"
        )
    return campaign


def campaign_item(app: App, item_id: str) -> CampaignItem:
    item = app.library.item(item_id.strip())
    if item.transactional:
        raise CampaignError(
            f"{item.id!r} is a transactional email without an unsubscribe footer; "
            "pick an item from content/campaigns/ (see `newsletter content list`)"
        )
    return CampaignItem(item.id, item.slug)


@dataclass(frozen=True)
class CampaignItem:
    id: str
    slug: str


def new_name(session: Session, name: str | None, *, default: str) -> str:
    if name is not None:
        cleaned = name.strip()
        if not cleaned or len(cleaned) > MAX_NAME:
            raise CampaignError(f"give --name a name of 1 to {MAX_NAME} characters")
        if not SLUG.fullmatch(cleaned):
            raise CampaignError(
                f"campaign name {cleaned[:64]!r} is not a slug: use lower-case letters, digits "
                f"and hyphens, e.g. --name {slugify(cleaned)}"
            )
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


def slugify(text: str) -> str:
    """``Black Friday!`` -> ``black-friday``: a name suggestion (pure)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:MAX_NAME] or "my-campaign"


def require_audience(session: Session, segment: Segment) -> int:
    audience = count_audience(session, segment)
    if audience == 0:
        raise CampaignError(
            f"no active subscriber matches ({segment.describe()}); check the tags with "
            "`newsletter subscribers list --status active --tag TAG`"
        )
    return audience


def require_postal_address(app: App) -> None:
    if not app.settings.postal_address.strip():
        raise CampaignError(
            "NEWSLETTER_POSTAL_ADDRESS is not set: every marketing email must show your postal "
            "address; set it (e.g. in .env) and run again"
        )


def require_real_content(app: App, item_id: str) -> None:
    """Example content (``example: true``) is never sent to real people; test sends
    (``campaign test``) and ``preview`` still show it."""
    if any(item.id == item_id and item.example for item in app.library.items()):
        raise CampaignError(
            f"{item_id!r} is example content (example: true) and is never sent to real "
            "subscribers; replace it with your own and remove the flag, or pick another item"
        )
