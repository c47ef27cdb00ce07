"""Replays through the real route: SendGrid's retries and duplicates act once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from newsletter.models import ConsentEvent, ProviderEvent, Subscriber
from tests.test_events_store import T0, add_subscriber, make_event
from tests.test_webhook_signature import Webhook
from tests.test_webhook_signature import make_webhook as make_webhook


def test_batch_replayed_over_http_has_one_effect(make_webhook: Callable[..., Webhook]) -> None:
    """Three posts of one batch and one with fresh sg_event_ids: stored and acted on once."""
    hook = make_webhook()
    add_subscriber(hook.app, "hard@example.org")
    add_subscriber(hook.app, "soft@example.org")
    batch = [
        make_event("bounce", "hard@example.org", T0, message="m1", type="bounce"),
        make_event("bounce", "soft@example.org", T0, message="m2", type="blocked"),
        make_event("open", "soft@example.org", T0, message="m3"),
    ]
    renamed = [{**e, "sg_event_id": "new-" + e["sg_event_id"]} for e in batch]
    answers = [hook.post(b).json() for b in (batch, batch, batch, renamed)]

    assert answers == [{"status": "accepted"}] * 4
    reports = [r or {} for r in hook.reports()]
    assert [(a["stored"], a["duplicates"], a["suppressed"]) for a in reports] == [
        (3, 0, 1),
        (0, 3, 0),
        (0, 3, 0),
        (0, 3, 0),
    ]
    assert hook.count(ProviderEvent) == 3
    with hook.app.sessions() as session:
        people = {s.email: (s.status, s.soft_bounces) for s in session.scalars(select(Subscriber))}
    consent = hook.count(ConsentEvent)
    assert people == {"hard@example.org": ("bounced", 0), "soft@example.org": ("active", 1)}
    assert consent == 1
