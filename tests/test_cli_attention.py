"""``subscribers plan``, ``subscribers timeline``, ``campaign create --priority/--topic``
and ``sequence simulate`` with the cap, through CliRunner with exact output."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.automation.use_cases import record_event
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.engagement import Engagement, record
from newsletter.models import BounceReport, Subscriber
from tests.cli_output import after_context

Run = Callable[..., Result]
T0 = "2026-12-01T08:00:00+00:00"
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@pytest.fixture
def run(cli_env: dict[str, Any]) -> Run:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(main, list(args), env={**cli_env, **(env or {})})
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return invoke


def subscribed(run: Run) -> None:
    run("subscribers", "add", "a@example.org", "--confirmed", "--timezone", "UTC", "--now", T0)
    run("tick", "--now", T0)  # the welcome goes at once


def test_plan_shows_the_high_priority_campaign_first_and_the_moved_drip(run: Run) -> None:
    subscribed(run)
    run("campaign", "create", "campaigns/seven-day-reset", "--priority", "high", "--now", T0)
    run("campaign", "schedule", "seven-day-reset", "--at", "2026-12-03T08:00:00+00:00", "--now", T0)
    out = run(
        "subscribers",
        "plan",
        "a@example.org",
        "--days",
        "8",
        "--format",
        "json",
        "--now",
        "2026-12-01T08:05:00+00:00",
    ).stdout
    assert json.loads(out) == [
        {
            "at": "2026-12-03 08:00 UTC",
            "item": "campaigns/seven-day-reset",
            "from": "campaign seven-day-reset",
            "status": "send",
            "note": "",
        },
        {
            "at": "2026-12-04 08:00 UTC",
            "item": "tips/meet-your-ql",
            "from": "sequence back-pain-basics",
            "status": "send",
            "note": "moved from 2026-12-03 08:00 UTC: marketing cap 1/1d reached",
        },
        {
            "at": "2026-12-07 08:00 UTC",
            "item": "tips/gentle-pressure",
            "from": "sequence back-pain-basics",
            "status": "send",
            "note": "",
        },
    ]
    shown = run("campaign", "show", "seven-day-reset").stdout
    assert "priority:  high, topic offers\n" not in shown  # the topic is the item's
    assert "priority:  high\n" in shown


def test_plan_for_an_unknown_address_is_one_line_exit_1(run: Run) -> None:
    result = run("subscribers", "plan", "nobody@example.org", code=1)
    assert after_context(result.stderr).startswith("Error: ")
    assert after_context(result.stderr).count("\n") == 1


def test_timeline_lists_consent_enrollment_and_every_ledger_row_in_order(run: Run) -> None:
    subscribed(run)
    out = run("subscribers", "timeline", "a@example.org").stdout
    assert out.splitlines() == [
        "2026-12-01 08:00 UTC  consent     imported  cli",
        "2026-12-01 08:00 UTC  enrollment  enrolled  sequence back-pain-basics",
        "2026-12-01 08:00 UTC  ledger      planned  drip system/welcome (delivery 1), due "
        "2026-12-01 08:00 UTC",
        "2026-12-01 08:00 UTC  ledger      sent  drip system/welcome (delivery 1)",
    ]
    entries = json.loads(run("subscribers", "timeline", "a@example.org", "--format", "json").stdout)
    assert [e["what"] for e in entries] == ["imported", "enrolled", "planned", "sent"]


def test_timeline_shows_a_deferral_with_its_reason(run: Run) -> None:
    subscribed(run)
    run("campaign", "create", "campaigns/seven-day-reset", "--now", T0)
    run("campaign", "send", "seven-day-reset", "--yes", "--now", "2026-12-01T09:00:00+00:00")
    run("tick", "--now", "2026-12-01T09:00:00+00:00")
    entries = json.loads(run("subscribers", "timeline", "a@example.org", "--format", "json").stdout)
    skipped = [e for e in entries if e["what"] == "skipped"]
    assert len(skipped) == 1
    assert "campaign campaigns/seven-day-reset" in skipped[0]["detail"]
    assert "NEWSLETTER_CAMPAIGN_STALE_HOURS" in skipped[0]["detail"]
    shown = run("campaign", "show", "seven-day-reset").stdout
    assert "cap:       deferred 0 (still queued), skipped as stale 1, opted out 0\n" in shown


def test_campaign_create_refuses_an_unknown_topic_and_priority(run: Run) -> None:
    subscribed(run)
    bad = run("campaign", "create", "campaigns/seven-day-reset", "--topic", "nope", code=1)
    assert (
        after_context(bad.stderr)
        == "Error: unknown topic 'nope' (known: tips, offers); pick one with --topic\n"
    )
    usage = run("campaign", "create", "campaigns/seven-day-reset", "--priority", "urgent", code=2)
    assert "'urgent' is not one of 'high', 'normal', 'low'" in usage.stderr
    run("campaign", "create", "campaigns/seven-day-reset", "--topic", "offers", "--priority", "low")
    shown = json.loads(run("campaign", "show", "seven-day-reset", "--format", "json").stdout)
    assert (shown["priority"], shown["topic"]) == ("low", "offers")


def test_a_bad_cap_setting_names_the_variable(run: Run) -> None:
    result = run(
        "subscribers",
        "plan",
        "a@example.org",
        code=1,
        env={"NEWSLETTER_MARKETING_CAP": "twice a day"},
    )
    assert "NEWSLETTER_MARKETING_CAP" in result.stderr
    assert "COUNT/PERIOD" in result.stderr


def test_sequence_simulate_applies_the_cap(
    run: Run, tmp_path: Any, cli_env: dict[str, Any]
) -> None:
    out = run(
        "sequence",
        "simulate",
        "back-pain-basics",
        "--signup",
        "2026-12-01T08:00:00+00:00",
        "--timezone",
        "UTC",
        "--rotations",
        "0",
        "--format",
        "json",
        env={"NEWSLETTER_MARKETING_CAP": "1/7d"},
    ).stdout
    rows = json.loads(out)
    assert rows[0]["item"] == "system/welcome"
    assert rows[1]["utc"] == "2026-12-08T08:00Z"  # after: 2d, held by 1/7d
    assert rows[1]["note"].startswith("moved from 2026-12-03 08:00 UTC: marketing cap 1/7d")


@pytest.mark.parametrize("cap", ["1/24h", "off"])
def test_plan_and_the_real_run_hold_a_drip_on_a_pause_drips_campaigns_day(
    run: Run, cap: str
) -> None:
    """``subscribers plan`` forecasts the hold; ticking through the days does exactly that:
    no drip step on the campaign's local day, the step sent the next morning."""
    env = {"NEWSLETTER_MARKETING_CAP": cap}
    subscribed(run)
    run("campaign", "create", "campaigns/seven-day-reset", "--pause-drips", "--now", T0)
    run("campaign", "schedule", "seven-day-reset", "--at", "2026-12-03T06:00:00+00:00", "--now", T0)
    now = "2026-12-01T08:05:00+00:00"
    planned = run(
        "subscribers", "plan", "a@example.org", "--days", "5", "--now", now, env=env
    ).stdout
    assert json.loads(
        run(
            "subscribers",
            "plan",
            "a@example.org",
            "--days",
            "5",
            "--format",
            "json",
            "--now",
            now,
            env=env,
        ).stdout
    ) == [
        {
            "at": "2026-12-03 06:00 UTC",
            "item": "campaigns/seven-day-reset",
            "from": "campaign seven-day-reset",
            "status": "send",
            "note": "",
        },
        {
            "at": "2026-12-04 08:00 UTC",
            "item": "tips/meet-your-ql",
            "from": "sequence back-pain-basics",
            "status": "send",
            "note": "moved from 2026-12-03 08:00 UTC: campaign seven-day-reset (--pause-drips) "
            "claims the local day 2026-12-03",
        },
    ]
    note = "moved from 2026-12-03 08:00 UTC: campaign seven-day-reset (--pause-drips) claims the local day 2026-12-03"  # noqa: E501
    assert planned.splitlines()[3:5] == [
        "│ 2026-12-03 06:00 UTC │ campaigns/seven-day-reset │ campaign seven-day-reset  │ send   │ "
        + " " * len(note)
        + " │",
        "│ 2026-12-04 08:00 UTC │ tips/meet-your-ql         │ sequence back-pain-basics │ send   │ "
        + note
        + " │",
    ]
    for at in (
        "2026-12-03T06:00:00+00:00",
        "2026-12-03T08:00:00+00:00",
        "2026-12-04T08:00:00+00:00",
    ):
        run("tick", "--now", at, env=env)
    entries = json.loads(run("subscribers", "timeline", "a@example.org", "--format", "json").stdout)
    sent = [(e["at"], e["detail"]) for e in entries if e["what"] == "sent"]
    assert sent == [
        ("2026-12-01T08:00:00+00:00", "drip system/welcome (delivery 1)"),
        ("2026-12-03T06:00:00+00:00", "campaign campaigns/seven-day-reset (delivery 2)"),
        ("2026-12-04T08:00:00+00:00", "drip tips/meet-your-ql (delivery 3)"),
    ]
    deferred = [e["detail"] for e in entries if e["what"] == "deferred"]
    assert deferred == [
        "tips/meet-your-ql to 2026-12-04 08:00 UTC: campaign "
        "seven-day-reset (--pause-drips) claims the local day 2026-12-03"
    ]


def test_timeline_has_engagement_bounce_reports_shop_events_and_a_sunset_notice(
    run: Run, app: App
) -> None:
    """Every per-subscriber history table is a source, in time order with the ledger; another
    subscriber's rows never show."""
    subscribed(run)
    run("subscribers", "add", "b@example.org", "--confirmed", "--timezone", "UTC", "--now", T0)
    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with app.sessions() as session:
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
    a, b = ids["a@example.org"], ids["b@example.org"]
    with transaction(app.sessions) as session:
        record(
            session,
            [
                Engagement("click", at + 31 * MINUTE, False, "link scanner", "tracking", 1, a, 0),
                Engagement("open", at + 30 * MINUTE, True, "", "tracking", 1, a),
                Engagement("open", at + 32 * MINUTE, True, "", "tracking", 9, b),
            ],
        )
        session.add_all(
            [
                BounceReport(
                    report_key="r1",
                    kind="soft",
                    delivery_id=1,
                    email_hash=None,
                    outcome="soft bounce counted (1 of 3)",
                    received_at=at + 50 * MINUTE,
                ),
                BounceReport(
                    report_key="r2",
                    kind="complaint",
                    delivery_id=None,
                    email_hash=email_hash("a@example.org"),
                    outcome="suppressed: complaint",
                    received_at=at + 55 * MINUTE,
                ),
                BounceReport(
                    report_key="r3",
                    kind="hard",
                    delivery_id=None,
                    email_hash=email_hash("b@example.org"),
                    outcome="suppressed: hard bounce",
                    received_at=at + 40 * MINUTE,
                ),
            ]
        )
    record_event(
        app,
        email="a@example.org",
        name="page.viewed",
        properties={"page": "/ql", "n": 2},
        event_id="ev-1",
        now=at + 45 * MINUTE,
    )
    with transaction(app.sessions) as session:
        session.execute(
            update(Subscriber).where(Subscriber.id == a).values(sunset_notice_at=at + 2 * HOUR)
        )
    out = run("subscribers", "timeline", "a@example.org").stdout
    assert out.splitlines() == [
        "2026-12-01 08:00 UTC  consent     imported  cli",
        "2026-12-01 08:00 UTC  enrollment  enrolled  sequence back-pain-basics",
        "2026-12-01 08:00 UTC  ledger      planned  drip system/welcome (delivery 1), due "
        "2026-12-01 08:00 UTC",
        "2026-12-01 08:00 UTC  ledger      sent  drip system/welcome (delivery 1)",
        "2026-12-01 08:30 UTC  engagement  open  delivery 1, human, via tracking",
        "2026-12-01 08:31 UTC  engagement  click  delivery 1, link 0, machine (link scanner), "
        "via tracking",
        '2026-12-01 08:45 UTC  event       page.viewed  key ev-1, {"n":2,"page":"/ql"}',
        "2026-12-01 08:50 UTC  bounce      soft bounce report  delivery 1: soft bounce counted "
        "(1 of 3)",
        "2026-12-01 08:55 UTC  bounce      complaint report  suppressed: complaint",
        "2026-12-01 10:00 UTC  sunset      re-permission notice pending  inactive after "
        "NEWSLETTER_SUNSET_GRACE_DAYS without a human open, click or keep",
    ]
    entries = json.loads(run("subscribers", "timeline", "a@example.org", "--format", "json").stdout)
    assert entries[4:] == [
        {
            "at": "2026-12-01T08:30:00+00:00",
            "source": "engagement",
            "what": "open",
            "detail": "delivery 1, human, via tracking",
        },
        {
            "at": "2026-12-01T08:31:00+00:00",
            "source": "engagement",
            "what": "click",
            "detail": "delivery 1, link 0, machine (link scanner), via tracking",
        },
        {
            "at": "2026-12-01T08:45:00+00:00",
            "source": "event",
            "what": "page.viewed",
            "detail": 'key ev-1, {"n":2,"page":"/ql"}',
        },
        {
            "at": "2026-12-01T08:50:00+00:00",
            "source": "bounce",
            "what": "soft bounce report",
            "detail": "delivery 1: soft bounce counted (1 of 3)",
        },
        {
            "at": "2026-12-01T08:55:00+00:00",
            "source": "bounce",
            "what": "complaint report",
            "detail": "suppressed: complaint",
        },
        {
            "at": "2026-12-01T10:00:00+00:00",
            "source": "sunset",
            "what": "re-permission notice pending",
            "detail": "inactive after NEWSLETTER_SUNSET_GRACE_DAYS without a human open, click "
            "or keep",
        },
    ]
    other = run("subscribers", "timeline", "b@example.org").stdout.splitlines()
    assert other[-2:] == [
        "2026-12-01 08:32 UTC  engagement  open  delivery 9, human, via tracking",
        "2026-12-01 08:40 UTC  bounce      hard bounce report  suppressed: hard bounce",
    ]
