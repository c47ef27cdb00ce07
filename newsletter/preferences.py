"""The preference centre's use cases: read and save one subscriber's topics and frequency.

The unsubscribe token is the credential (no login, no cookies). Saving records one consent
event (kind ``preferences``, source ``preference centre``) whenever something changed; an
opted-out topic stops every email of it at claim time, and the frequency choice becomes the
subscriber's own cap (``newsletter.attention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.attention.claims import policy_of
from newsletter.attention.policy import DEFAULT_FREQUENCY, FREQUENCIES
from newsletter.attention.timeline import PREFERENCES_SOURCE
from newsletter.attention.topics import Topic
from newsletter.db import transaction
from newsletter.errors import PreferencesError, TokenError
from newsletter.models import ConsentEvent, ConsentKind, Subscriber, SubscriberPreferences
from newsletter.tokens import read_unsubscribe_token


@dataclass(frozen=True)
class PreferencesView:
    topics: tuple[tuple[Topic, bool], ...]  # each topic and whether they get it
    frequency: str
    frequencies: tuple[tuple[str, str], ...]  # (value, label)
    active: bool


def _subscriber(app: App, session: Session, token: str) -> Subscriber:
    public_id = read_unsubscribe_token(token, keys=app.settings.secret_keys)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
    if subscriber is None:
        raise TokenError("we hold no data for this link any more: nothing to choose")
    return subscriber


def _view(app: App, subscriber: Subscriber, prefs: SubscriberPreferences | None) -> PreferencesView:
    off = set(prefs.topics_off or []) if prefs else set()
    topics = policy_of(app).topics.topics
    return PreferencesView(
        topics=tuple((t, t.name not in off) for t in topics),
        frequency=prefs.frequency if prefs else DEFAULT_FREQUENCY,
        frequencies=tuple((value, label) for value, (label, _cap) in FREQUENCIES.items()),
        active=subscriber.status == "active",
    )


def load_preferences(app: App, token: str) -> PreferencesView:
    """Raises ``TokenError`` for a bad token or a forgotten subscriber."""
    with app.sessions() as session:
        subscriber = _subscriber(app, session, token)
        return _view(app, subscriber, session.get(SubscriberPreferences, subscriber.id))


def save_preferences(
    app: App,
    token: str,
    *,
    topics_on: Sequence[str],
    frequency: str,
    ip: str | None,
    now: datetime,
) -> PreferencesView:
    """Save the form; ``PreferencesError`` (nothing written) for an unknown topic or
    frequency, ``TokenError`` for a bad token."""
    known = policy_of(app).topics.names
    unknown = [t for t in topics_on if t not in known]
    if unknown:
        raise PreferencesError(
            f"unknown topic {unknown[0][:64]!r}; choose among {', '.join(known) or 'none'}"
        )
    if frequency not in FREQUENCIES:
        raise PreferencesError(
            f"unknown frequency {frequency[:64]!r}; choose {' or '.join(FREQUENCIES)}"
        )
    off = sorted(set(known) - set(topics_on))
    with transaction(app.sessions) as session:
        subscriber = _subscriber(app, session, token)
        prefs = session.get(SubscriberPreferences, subscriber.id, with_for_update=True)
        before = (
            (sorted(prefs.topics_off or []), prefs.frequency) if prefs else ([], DEFAULT_FREQUENCY)
        )
        if (off, frequency) != before:
            if prefs is None:
                prefs = SubscriberPreferences(subscriber_id=subscriber.id)
                session.add(prefs)
            prefs.topics_off = off
            prefs.frequency = frequency
            prefs.updated_at = now
            session.add(
                ConsentEvent(
                    subscriber_id=subscriber.id,
                    kind=ConsentKind.PREFERENCES.value,
                    at=now,
                    ip=ip,
                    source=PREFERENCES_SOURCE,
                    consent_text=describe(known, off, frequency),
                )
            )
            session.flush()
        return _view(app, subscriber, prefs)


def describe(known: Sequence[str], off: Sequence[str], frequency: str) -> str:
    """``topics: tips on, offers off; frequency: at most one a week`` (the consent text)."""
    topics = ", ".join(f"{t} {'off' if t in off else 'on'}" for t in known) or "none"
    return f"topics: {topics}; frequency: {FREQUENCIES[frequency][0].lower()}"
