"""SendGrid's own open/click/bounce/spam events merged into ``engagement_events`` with their
verdict, never double-counted with our pixel; ``subscribers show`` lists everything in time
order, each marked human or machine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.engagement import Engagement, record
from newsletter.models import EngagementEvent
from newsletter.settings import load_settings
from newsletter.stats import all_sequence_stats
from tests.conftest import NOW
from tests.test_events_store import T0, add_delivery, add_subscriber, make_event, post


def kinds(app: App) -> list[tuple[str, bool, str, str]]:
    with app.sessions() as session:
        rows = session.scalars(select(EngagementEvent).order_by(EngagementEvent.id))
        return [(e.kind, e.human, e.reason, e.source) for e in rows]


def test_sendgrid_events_are_mirrored_once_with_their_verdict(app: App) -> None:
    sid = add_subscriber(app, "kim@example.org")
    delivery = add_delivery(app, sid)
    later = T0 + timedelta(hours=2)
    events = [
        make_event("open", "kim@example.org", later, delivery_id=delivery, sg_machine_open=True),
        make_event("open", "kim@example.org", later + timedelta(minutes=5), delivery_id=delivery),
        make_event(
            "click",
            "kim@example.org",
            T0 + timedelta(seconds=3),
            delivery_id=delivery,
            url="https://a",
        ),
        make_event("delivered", "kim@example.org", T0, delivery_id=delivery),
        make_event("open", "other@example.org", later, delivery_id=None),  # not ours
    ]
    post(app, events)
    post(app, events)  # SendGrid retries: stored and mirrored once
    assert kinds(app) == [
        ("open", False, "sendgrid machine", "sendgrid"),
        ("open", True, "human", "sendgrid"),
        ("click", False, "too soon", "sendgrid"),
    ]


def test_our_pixel_and_sendgrids_open_of_one_email_count_once(app: App) -> None:
    sid = add_subscriber(app, "kim@example.org")
    delivery = add_delivery(app, sid, step=0)
    later = T0 + timedelta(hours=2)
    post(app, [make_event("open", "kim@example.org", later, delivery_id=delivery)])
    with transaction(app.sessions) as session:
        record(
            session,
            [
                Engagement(
                    "open",
                    later,
                    True,
                    "human",
                    "tracking",
                    delivery_id=delivery,
                    subscriber_id=sid,
                )
            ],
        )
    with app.sessions() as session:
        [row] = all_sequence_stats(session)
    assert (row["sent"], row["opens"], row["machine_opens"]) == (1, 1, 0)


def test_subscribers_show_lists_engagement_in_time_order(cli_env: dict[str, Any]) -> None:
    app = App(load_settings(cli_env))
    try:
        app.migrate()
        sid = add_subscriber(app, "kim@example.org")
        delivery = add_delivery(app, sid)
        with transaction(app.sessions) as session:
            record(
                session,
                [
                    Engagement("click", NOW, True, "human", "tracking", delivery, sid, 0),
                    Engagement(
                        "open",
                        NOW - timedelta(hours=1),
                        False,
                        "apple mpp ua",
                        "tracking",
                        delivery,
                        sid,
                    ),
                    Engagement(
                        "bounce",
                        NOW + timedelta(days=3),
                        False,
                        "dsn failed 5.1.1",
                        "report",
                        delivery,
                        sid,
                    ),
                    Engagement(
                        "complaint",
                        NOW + timedelta(days=4),
                        True,
                        "arf abuse",
                        "report",
                        delivery,
                        sid,
                    ),
                ],
            )
    finally:
        app.close()
    result = CliRunner().invoke(main, ["subscribers", "show", "kim@example.org"], env=cli_env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("engagement:")
    assert lines[start:] == [
        "engagement:",
        f"  2026-11-24T08:00:00  open        machine #{delivery:<6} apple mpp ua",
        f"  2026-11-24T09:00:00  click       human   #{delivery:<6} human",
        f"  2026-11-27T09:00:00  bounce      machine #{delivery:<6} dsn failed 5.1.1",
        f"  2026-11-28T09:00:00  complaint   human   #{delivery:<6} arf abuse",
    ]
