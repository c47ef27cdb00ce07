"""The ``engagement_events`` store on its own: insert once per ``source_key``, whether any
open or click exists, one subscriber's history in time order (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.engagement import Engagement, engagement_history, has_engagement_data, record
from newsletter.models import EngagementEvent
from tests.conftest import NOW
from tests.factories import add_subscriber


def _count(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(EngagementEvent)) or 0)


def test_record_inserts_each_event_once_per_source_key_and_returns_the_new_ones(app: App) -> None:
    first = Engagement("open", NOW, True, "human", "sendgrid", source_key="sg:1")
    second = Engagement(
        "click", NOW, False, "too soon", "sendgrid", link_index=2, source_key="sg:2"
    )
    unkeyed = Engagement("open", NOW, True, "human", "tracking")
    with transaction(app.sessions) as session:
        assert record(session, []) == []
        assert record(session, [first, unkeyed]) == [first, unkeyed]
    with transaction(app.sessions) as session:
        again = Engagement(
            "open", NOW + timedelta(hours=1), True, "human", "sendgrid", source_key="sg:1"
        )
        assert record(session, [again, second, unkeyed]) == [second, unkeyed]
    assert _count(app) == 4
    with app.sessions() as session:
        stored = session.scalars(
            select(EngagementEvent).where(EngagementEvent.source_key == "sg:2")
        ).one()
        assert (stored.kind, stored.human, stored.reason, stored.source, stored.link_index) == (
            "click",
            False,
            "too soon",
            "sendgrid",
            2,
        )


def test_engagement_data_means_an_open_or_a_click(app: App) -> None:
    with app.sessions() as session:
        assert has_engagement_data(session) is False
    with transaction(app.sessions) as session:
        record(
            session,
            [
                Engagement("bounce", NOW, False, "dsn", "report"),
                Engagement("complaint", NOW, True, "arf", "report"),
                Engagement("keep", NOW, True, "keep button", "keep"),
            ],
        )
    with app.sessions() as session:
        assert has_engagement_data(session) is False
    with transaction(app.sessions) as session:
        record(session, [Engagement("click", NOW, False, "scanner", "tracking")])
    with app.sessions() as session:
        assert has_engagement_data(session) is True


def test_the_history_is_one_subscribers_oldest_first(app: App) -> None:
    with transaction(app.sessions) as session:
        kim = add_subscriber(session, "kim@example.org").id
        lee = add_subscriber(session, "lee@example.org").id
        record(
            session,
            [
                Engagement("click", NOW, True, "human", "tracking", 7, kim, 0),
                Engagement("open", NOW, False, "apple mpp ua", "tracking", 7, kim),
                Engagement("open", NOW - timedelta(days=1), True, "human", "tracking", 6, kim),
                Engagement("open", NOW - timedelta(days=2), True, "human", "tracking", 5, lee),
            ],
        )
    with app.sessions() as session:
        assert engagement_history(session, kim) == [
            {
                "at": "2026-11-23T09:00:00+00:00",
                "kind": "open",
                "human": True,
                "reason": "human",
                "source": "tracking",
                "delivery_id": 6,
                "link_index": None,
            },
            {
                "at": "2026-11-24T09:00:00+00:00",
                "kind": "click",
                "human": True,
                "reason": "human",
                "source": "tracking",
                "delivery_id": 7,
                "link_index": 0,
            },
            {
                "at": "2026-11-24T09:00:00+00:00",
                "kind": "open",
                "human": False,
                "reason": "apple mpp ua",
                "source": "tracking",
                "delivery_id": 7,
                "link_index": None,
            },
        ]
        assert engagement_history(session, lee + 100) == []
