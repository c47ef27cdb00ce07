"""Checks of a campaign's ``--priority`` and ``--topic`` before it is written."""

from __future__ import annotations

from newsletter.app import App
from newsletter.attention.claims import policy_of
from newsletter.attention.priority import parse_priority
from newsletter.errors import CampaignError


def check_priority(text: str) -> int:
    try:
        return parse_priority(text)
    except ValueError as exc:
        raise CampaignError(f"{exc}; e.g. --priority high") from None


def check_topic(app: App, topic: str | None) -> str | None:
    """A topic of ``content/topics.yaml``, or None (the item's own topic applies)."""
    if topic is None or not topic.strip():
        return None
    names = policy_of(app).topics.names
    if topic.strip() not in names:
        known = ", ".join(names) or "none: add content/topics.yaml"
        raise CampaignError(f"unknown topic {topic!r} (known: {known}); pick one with --topic")
    return topic.strip()
