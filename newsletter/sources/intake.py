"""The use case behind ``POST /subscribe/{source}``: hand an accepted delivery to subscribe."""

from __future__ import annotations

import logging
from datetime import datetime

from newsletter.app import App
from newsletter.sources.decide import Verdict
from newsletter.subscriptions import CONSENT_TEXT, SubscribeOutcome, SubscribeRequest, subscribe

log = logging.getLogger(__name__)


def take(app: App, verdict: Verdict, *, now: datetime) -> SubscribeOutcome | None:
    """Subscribe what ``verdict`` asks for; None (logged) when it asks for nothing."""
    if verdict.action != "subscribe" or verdict.signup is None:
        log.info("source %s: ignored: %s", verdict.source, verdict.reason)
        return None
    signup = verdict.signup
    outcome = subscribe(
        app,
        SubscribeRequest(
            email=signup.email,
            first_name=signup.first_name,
            timezone=signup.timezone,
            tags=verdict.tags,  # the source's fixed tags; the sender's own are never copied
            source=verdict.source,
            ip=signup.ip,  # the subscriber's, as the sender reports it (not the sender's)
            user_agent=None,
            consent_text=verdict.consent_text or CONSENT_TEXT,
            event_id=signup.event_id,
            single_opt_in=verdict.single_opt_in,
        ),
        now=now,
    )
    log.info(
        "source %s: outcome=%s event=%s opt_in=%s",
        verdict.source,
        outcome.value,
        signup.event_id,
        "single" if verdict.single_opt_in else "double",
    )
    return outcome
