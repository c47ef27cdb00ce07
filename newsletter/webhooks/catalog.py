"""The event types a webhook can subscribe to (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.errors import WebhookError

EVENT_TYPES: tuple[str, ...] = (
    "subscriber.created",
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "subscriber.complained",
    "subscriber.forgotten",
    "email.sent",
    "email.failed",
    "sequence.completed",
    "sequence.exited",
    "campaign.started",
    "campaign.finished",
)
# Sent by ``webhook test`` only; no endpoint subscribes to it.
PING = "ping"
WILDCARD = "*"


def check_event_types(names: Iterable[str]) -> list[str]:
    """The names, deduplicated in order; ``*`` means every type. Raises ``WebhookError``."""
    chosen: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name == WILDCARD:
            return list(EVENT_TYPES)
        if name not in EVENT_TYPES:
            raise WebhookError(
                f"unknown event {raw!r}; choose from {', '.join(EVENT_TYPES)} (or '*' for all)"
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise WebhookError("give at least one --event NAME (or --event '*' for all)")
    return chosen
