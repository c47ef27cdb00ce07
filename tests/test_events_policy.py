"""What an event does to a subscriber (pure), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.events.parsing import ParsedEvent
from newsletter.events.policy import (
    SOFT_BOUNCE_LIMIT,
    Effect,
    applies,
    effect_of,
    target_status,
)
from newsletter.models import SubscriberStatus as S

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def event(name: str, *, bounce_type: str | None = None, reason: str | None = None) -> ParsedEvent:
    return ParsedEvent(
        event=name,
        occurred_at=T0,
        logical_key="k",
        email="a@example.org",
        email_hash=None,
        sg_event_id=None,
        sg_message_id=None,
        delivery_id=None,
        bounce_type=bounce_type,
        reason=reason,
        payload={},
    )


@pytest.mark.parametrize(
    ("ev", "effect"),
    [
        (event("bounce"), Effect.BOUNCE),
        (event("bounce", bounce_type="bounce"), Effect.BOUNCE),
        (event("bounce", bounce_type="Blocked"), Effect.SOFT_BOUNCE),
        (event("bounce", bounce_type="blocked"), Effect.SOFT_BOUNCE),
        (event("dropped", reason="Bounced Address"), Effect.BOUNCE),
        (event("dropped", reason="  invalid "), Effect.BOUNCE),
        (event("dropped", reason="Unsubscribed Address"), Effect.UNSUBSCRIBE),
        (event("dropped", reason="Spam Reporting Address"), Effect.COMPLAINT),
        (event("dropped", reason="Exceeded quota"), Effect.NONE),
        (event("dropped"), Effect.NONE),
        (event("spamreport"), Effect.COMPLAINT),
        (event("unsubscribe"), Effect.UNSUBSCRIBE),
        (event("group_unsubscribe"), Effect.UNSUBSCRIBE),
        (event("group_resubscribe"), Effect.NONE),
        (event("delivered"), Effect.NONE),
        (event("open"), Effect.NONE),
        (event("deferred"), Effect.NONE),
    ],
    ids=[
        "bounce-untyped",
        "bounce-hard",
        "blocked-mixed-case",
        "blocked",
        "dropped-bounced",
        "dropped-invalid-spaces",
        "dropped-unsubscribed",
        "dropped-spam",
        "dropped-quota",
        "dropped-no-reason",
        "spamreport",
        "unsubscribe",
        "group-unsubscribe",
        "group-resubscribe",
        "delivered",
        "open",
        "deferred",
    ],
)
def test_effect_of(ev: ParsedEvent, effect: Effect) -> None:
    assert effect_of(ev) is effect


@pytest.mark.parametrize(
    ("effect", "occurred", "confirmed", "expected"),
    [
        (Effect.UNSUBSCRIBE, T0, None, True),
        (Effect.UNSUBSCRIBE, T0, T0 + timedelta(seconds=1), False),
        (Effect.UNSUBSCRIBE, T0, T0, True),
        (Effect.UNSUBSCRIBE, T0 + timedelta(days=1), T0, True),
        (Effect.BOUNCE, T0, T0 + timedelta(days=1), True),
        (Effect.COMPLAINT, T0, T0 + timedelta(days=1), True),
        (Effect.SOFT_BOUNCE, T0, None, True),
        (Effect.NONE, T0, None, False),
        (Effect.NONE, T0, T0 - timedelta(days=1), False),
    ],
    ids=[
        "unsub-never-confirmed",
        "unsub-before-reconfirm",
        "unsub-same-instant",
        "unsub-after-confirm",
        "bounce-before-confirm",
        "complaint-before-confirm",
        "soft",
        "none",
        "none-after-confirm",
    ],
)
def test_applies(
    effect: Effect, occurred: datetime, confirmed: datetime | None, expected: bool
) -> None:
    assert applies(effect, occurred_at=occurred, confirmed_at=confirmed) is expected


@pytest.mark.parametrize(
    ("current", "effects", "soft", "expected"),
    [
        (S.ACTIVE, [Effect.BOUNCE], 0, S.BOUNCED),
        (S.BOUNCED, [Effect.BOUNCE], 0, None),
        (S.COMPLAINED, [Effect.BOUNCE], 0, None),
        (S.BOUNCED, [Effect.COMPLAINT], 0, S.COMPLAINED),
        (S.UNSUBSCRIBED, [Effect.UNSUBSCRIBE], 0, None),
        (S.BOUNCED, [Effect.UNSUBSCRIBE], 0, None),
        (S.PENDING, [Effect.UNSUBSCRIBE], 0, S.UNSUBSCRIBED),
        (None, [Effect.UNSUBSCRIBE], 0, S.UNSUBSCRIBED),
        (S.ACTIVE, [Effect.UNSUBSCRIBE, Effect.COMPLAINT, Effect.BOUNCE], 0, S.COMPLAINED),
        (S.ACTIVE, [Effect.SOFT_BOUNCE], SOFT_BOUNCE_LIMIT - 1, None),
        (S.ACTIVE, [Effect.SOFT_BOUNCE], SOFT_BOUNCE_LIMIT, S.BOUNCED),
        (S.ACTIVE, [], SOFT_BOUNCE_LIMIT + 1, S.BOUNCED),
        (S.COMPLAINED, [Effect.SOFT_BOUNCE], SOFT_BOUNCE_LIMIT, None),
        (S.ACTIVE, [Effect.NONE], 0, None),
        (S.ACTIVE, [], 0, None),
        (S.ACTIVE, [Effect.UNSUBSCRIBE], 0, S.UNSUBSCRIBED),
        (S.UNSUBSCRIBED, [Effect.BOUNCE], 0, S.BOUNCED),
        (S.INACTIVE, [Effect.BOUNCE], 0, S.BOUNCED),
        (S.INACTIVE, [Effect.UNSUBSCRIBE], 0, None),
    ],
    ids=[
        "active-bounce",
        "bounced-bounce-stays",
        "complained-never-downgraded",
        "bounced-to-complained",
        "unsubscribed-again",
        "bounced-not-downgraded",
        "pending-unsub",
        "unknown-unsub",
        "strongest-wins",
        "two-soft",
        "third-soft",
        "soft-total-only",
        "soft-never-downgrades",
        "none",
        "nothing",
        "active-unsub",
        "unsubscribed-then-bounced",
        "inactive-then-bounced",
        "inactive-unsub-same-severity",
    ],
)
def test_target_status(
    current: S | None, effects: list[Effect], soft: int, expected: S | None
) -> None:
    assert target_status(current, effects, soft_bounces=soft) == expected


def test_soft_bounce_limit_is_three() -> None:
    assert SOFT_BOUNCE_LIMIT == 3
