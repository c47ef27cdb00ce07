"""What each event's ``data`` carries (pure).

Subscriber events carry the subscriber's public id (random, the same in every event about
them), address, name, status, tags and time zone; ``subscriber.forgotten`` carries the
public id only - no personal data - so a receiver can erase its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SubscriberFacts:
    public_id: str
    email: str
    first_name: str | None
    status: str
    tags: tuple[str, ...]
    timezone: str


def subscriber_data(who: SubscriberFacts, **extra: Any) -> dict[str, Any]:
    return {
        "subscriber": {
            "id": who.public_id,
            "email": who.email,
            "first_name": who.first_name,
            "status": who.status,
            "tags": list(who.tags),
            "timezone": who.timezone,
        },
        **extra,
    }


def forgotten_data(public_id: str) -> dict[str, Any]:
    return {"subscriber": {"id": public_id}}


def short_subscriber(who: SubscriberFacts | None) -> dict[str, Any] | None:
    return None if who is None else {"id": who.public_id, "email": who.email}


@dataclass(frozen=True)
class EmailFacts:
    delivery_id: int
    kind: str
    item_id: str
    status: str  # sent | failed
    campaign: str | None
    sequence: str | None
    provider_message_id: str | None
    error: str | None


def email_data(email: EmailFacts, who: SubscriberFacts | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "delivery_id": email.delivery_id,
        "kind": email.kind,
        "item": email.item_id,
        "status": email.status,
        "campaign": email.campaign,
        "sequence": email.sequence,
        "provider_message_id": email.provider_message_id,
    }
    if email.status == "failed":
        body["error"] = email.error
    return {"email": body, "subscriber": short_subscriber(who)}


def sequence_data(sequence: str, who: SubscriberFacts | None, **extra: Any) -> dict[str, Any]:
    return {"sequence": {"name": sequence}, "subscriber": short_subscriber(who), **extra}


@dataclass(frozen=True)
class CampaignFacts:
    name: str
    item_id: str
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    audience_count: int


def campaign_data(campaign: CampaignFacts) -> dict[str, Any]:
    return {
        "campaign": {
            "name": campaign.name,
            "item": campaign.item_id,
            "state": campaign.state,
            "started_at": _iso(campaign.started_at),
            "finished_at": _iso(campaign.finished_at),
            "audience_count": campaign.audience_count,
        }
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")
