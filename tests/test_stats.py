"""Stats are exact on a hand-built ledger with events; the spam flag trips above 0.1%."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert

from newsletter.app import App
from newsletter.cli import main
from newsletter.cli.stats import parse_since
from newsletter.db import transaction
from newsletter.models import (
    Campaign,
    ConsentEvent,
    Delivery,
    EngagementEvent,
    Enrollment,
    ProviderEvent,
    Subscriber,
)
from newsletter.settings import load_settings
from newsletter.stats import campaign_stats, sequence_stats, stats_report
from tests.api_support import Clock, bearer, keys_and_client
from tests.cli_output import after_context
from tests.conftest import NOW

SEQ = "back-pain-basics"
EARLY = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)  # before --since 2026-11-01
SENT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


class Ledger:
    """Rows with explicit ids, so events can name their delivery."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.engagement: list[dict[str, Any]] = []

    def delivery(self, kind: str, status: str = "sent", *, at: datetime = SENT, **rest: Any) -> int:
        delivery_id = len(self.deliveries) + 1
        self.deliveries.append(
            {
                "id": delivery_id,
                "key": f"k{delivery_id}",
                "kind": kind,
                "status": status,
                "attempts": 1,
                "due_at": at,
                "created_at": at,
                "updated_at": at,
                "sent_at": at if status == "sent" else None,
                "item_id": rest.pop("item_id", "tips/x"),
                **rest,
            }
        )
        return delivery_id

    def event(
        self, delivery_id: int, name: str, minutes: int = 1, *, machine: bool = False
    ) -> None:
        if name in ("open", "click"):  # as ``mirror_provider_events`` or tracking writes them
            self.engagement.append(
                {
                    "delivery_id": delivery_id,
                    "kind": name,
                    "human": not machine,
                    "reason": "sendgrid machine" if machine else "human",
                    "source": "sendgrid",
                    "source_key": f"{len(self.events):064d}",
                    "at": SENT + timedelta(minutes=minutes),
                }
            )
        self.events.append(
            {
                "logical_key": f"{len(self.events):064d}",
                "event": name,
                "occurred_at": SENT + timedelta(minutes=minutes),
                "delivery_id": delivery_id,
                "payload": {},
                "received_at": SENT,
            }
        )


def build(app: App) -> dict[str, list[int]]:
    """The fixture the expected numbers below are computed from by hand.

    Sequence step 0 (system/welcome): 10 sent, 9 delivered, 1 bounce, 6 opened (one of them
    three times), 3 clicked (one twice), 1 unsubscribe; plus one sent in October.
    Step 1 (tips/meet-your-ql): 4 sent, 1 unknown and 1 skipped (not sent), 4 delivered,
    1 open, and a spam report. Rotation (-1): 2 sent, no events.
    Campaign black-friday: 1000 sent and delivered, 2 spam reports (0.2%, flagged), and a
    test send with events that must not count. Campaign spring: 1000 delivered, 1 spam
    report (exactly 0.1%, not flagged).
    """
    ledger = Ledger()
    welcome = [
        ledger.delivery("drip", enrollment_id=n, step=0, item_id="system/welcome")
        for n in range(1, 11)
    ]
    ledger.delivery("drip", enrollment_id=1, step=0, item_id="system/welcome", at=EARLY)
    for d in welcome[:9]:
        ledger.event(d, "processed", 0)
        ledger.event(d, "delivered")
    ledger.event(welcome[9], "bounce")
    for d in welcome[:6]:
        ledger.event(d, "open", 5)
    ledger.event(welcome[0], "open", 6)
    ledger.event(welcome[0], "open", 7)
    for d in welcome[:3]:
        ledger.event(d, "click", 8)
    ledger.event(welcome[0], "click", 9)
    ledger.event(welcome[0], "open", 2, machine=True)  # Apple MPP before the person read it
    ledger.event(welcome[7], "open", 2, machine=True)
    ledger.event(welcome[8], "click", 2, machine=True)  # a link scanner
    ledger.event(welcome[2], "unsubscribe", 10)
    tips = [
        ledger.delivery("drip", enrollment_id=n, step=1, item_id="tips/meet-your-ql")
        for n in range(1, 5)
    ]
    ledger.delivery("drip", "unknown", enrollment_id=5, step=1, item_id="tips/meet-your-ql")
    ledger.delivery("drip", "skipped", enrollment_id=6, step=1, item_id="tips/meet-your-ql")
    for d in tips:
        ledger.event(d, "delivered")
    ledger.event(tips[0], "open")
    ledger.event(tips[1], "spamreport")
    for n in (7, 8):
        ledger.delivery("drip", enrollment_id=n, step=-1, item_id="tutorials/stretch")
    campaign_ids: dict[int, list[int]] = {}
    for campaign_id, spam in ((1, 2), (2, 1)):
        sent = [ledger.delivery("campaign", campaign_id=campaign_id) for _ in range(1000)]
        campaign_ids[campaign_id] = sent
        for d in sent:
            ledger.event(d, "delivered")
        for d in sent[:spam]:
            ledger.event(d, "spamreport", 30)
    test_send = ledger.delivery("test", campaign_id=1, to_email="seed@example.org")
    ledger.event(test_send, "delivered")
    ledger.event(test_send, "spamreport")
    ids = {"welcome": welcome, "tips": tips, "spring": campaign_ids[1], "test": [test_send]}

    with transaction(app.sessions) as session:
        session.execute(
            insert(Subscriber),
            [
                {
                    "id": n,
                    "public_id": f"p{n}",
                    "email": f"s{n}@example.org",
                    "timezone": "UTC",
                    "status": "active",
                    "tags": [],
                    "attributes": {},
                    "created_at": EARLY,
                    "updated_at": EARLY,
                    "soft_bounces": 0,
                }
                for n in range(1, 11)
            ],
        )
        session.execute(
            insert(Enrollment),
            [
                {
                    "id": n,
                    "subscriber_id": n,
                    "sequence": SEQ,
                    "status": "active",
                    "position": 1,
                    "created_at": EARLY,
                }
                for n in range(1, 11)
            ],
        )
        session.execute(
            insert(Campaign),
            [
                {
                    "id": cid,
                    "name": name,
                    "item_id": "campaigns/seven-day-reset",
                    "state": "sent",
                    "include_tags": [],
                    "exclude_tags": [],
                    "created_at": EARLY,
                    "updated_at": EARLY,
                    "started_at": SENT - timedelta(days=cid),
                }
                for cid, name in ((1, "spring"), (2, "black-friday"))
            ],
        )
        session.execute(insert(Delivery), ledger.deliveries)
        session.execute(insert(ProviderEvent), ledger.events)
        session.execute(insert(EngagementEvent), ledger.engagement)
    return ids


def step_row(sequence: str, step: int, item: str, **numbers: Any) -> dict[str, Any]:
    return {"sequence": sequence, "step": step, "item": item, **numbers}


WELCOME = {
    "sent": 10,
    "delivered": 9,
    "opens": 6,
    "machine_opens": 2,
    "clicks": 3,
    "machine_clicks": 1,
    "bounces": 1,
    "spam_reports": 0,
    "unsubscribes": 1,
    "delivered_rate": 0.9,
    "open_rate": 0.666667,
    "click_rate": 0.333333,
    "bounce_rate": 0.1,
    "spam_rate": 0.0,
    "unsubscribe_rate": 0.111111,
    "flagged": False,
}
TIPS = {
    "sent": 4,
    "delivered": 4,
    "opens": 1,
    "machine_opens": 0,
    "clicks": 0,
    "machine_clicks": 0,
    "bounces": 0,
    "spam_reports": 1,
    "unsubscribes": 0,
    "delivered_rate": 1.0,
    "open_rate": 0.25,
    "click_rate": 0.0,
    "bounce_rate": 0.0,
    "spam_rate": 0.25,
    "unsubscribe_rate": 0.0,
    "flagged": True,
}
ROTATION = {
    "sent": 2,
    "delivered": 0,
    "opens": 0,
    "machine_opens": 0,
    "clicks": 0,
    "machine_clicks": 0,
    "bounces": 0,
    "spam_reports": 0,
    "unsubscribes": 0,
    "delivered_rate": 0.0,
    "open_rate": 0.0,  # no delivered events: rates over sent
    "click_rate": 0.0,
    "bounce_rate": 0.0,
    "spam_rate": 0.0,
    "unsubscribe_rate": 0.0,
    "flagged": False,
}


def campaign_numbers(spam: int) -> dict[str, Any]:
    return {
        "sent": 1000,
        "delivered": 1000,
        "opens": 0,
        "machine_opens": 0,
        "clicks": 0,
        "machine_clicks": 0,
        "bounces": 0,
        "spam_reports": spam,
        "unsubscribes": 0,
        "delivered_rate": 1.0,
        "open_rate": 0.0,
        "click_rate": 0.0,
        "bounce_rate": 0.0,
        "spam_rate": spam / 1000,
        "unsubscribe_rate": 0.0,
        "flagged": spam > 1,
    }


@pytest.fixture
def built(app: App) -> App:
    build(app)
    return app


def test_sequence_stats_are_exact(built: App) -> None:
    """Per step: unique opens and clicks, rates over delivered, the October email included."""
    with built.sessions() as session:
        rows = sequence_stats(session, SEQ)
    assert rows == [
        step_row(
            SEQ,
            0,
            "system/welcome",
            **{**WELCOME, "sent": 11, "delivered_rate": 0.818182, "bounce_rate": 0.090909},
        ),
        step_row(SEQ, 1, "tips/meet-your-ql", **TIPS),
        step_row(SEQ, -1, "tutorials/stretch", **ROTATION),
    ]


def test_since_limits_the_cohort(built: App) -> None:
    """``since`` keeps only emails sent from then on (the October welcome drops out)."""
    with built.sessions() as session:
        rows = sequence_stats(session, SEQ, since=datetime(2026, 11, 1, tzinfo=UTC))
        none = sequence_stats(session, SEQ, since=NOW)
        other = sequence_stats(session, "no-such-sequence")
    assert rows[0] == step_row(SEQ, 0, "system/welcome", **WELCOME)
    assert (none, other) == ([], [])


def test_campaign_stats_exclude_test_sends_and_flag_above_0_1_percent(built: App) -> None:
    """2 spam reports in 1000 is flagged, 1 in 1000 (exactly 0.1%) is not; seeds don't count."""
    with built.sessions() as session:
        spring, black_friday, unknown = (campaign_stats(session, cid) for cid in (1, 2, 99))
    assert spring == campaign_numbers(2)
    assert black_friday == campaign_numbers(1)
    assert unknown == {
        **dict.fromkeys(("sent", "delivered", "opens", "clicks", "bounces"), 0),
        **dict.fromkeys(("machine_opens", "machine_clicks"), 0),
        "spam_reports": 0,
        "unsubscribes": 0,
        **dict.fromkeys(("delivered_rate", "open_rate", "click_rate", "bounce_rate")),
        "spam_rate": None,
        "unsubscribe_rate": None,
        "flagged": False,
    }


def test_the_api_numbers_steps_from_1_as_the_cli_does(built: App) -> None:
    """GET /api/v1/stats: the welcome is step 1, the tip step 2, a rotation item "then", as
    in `stats --format json`."""
    client, _write, read = keys_and_client(built, Clock(NOW))
    response = client.get("/api/v1/stats", headers=bearer(read))
    assert response.status_code == 200
    sequences = response.json()["sequences"]
    assert [(row["step"], row["item"]) for row in sequences] == [
        (1, "system/welcome"),
        (2, "tips/meet-your-ql"),
        ("then", "tutorials/stretch"),  # a rotation item, as the CLI shows it
    ]
    with built.sessions() as session:
        stored = sequence_stats(session, SEQ)
    assert sequences[0] == {**stored[0], "step": 1}


def test_report_lists_campaigns_oldest_first(built: App) -> None:
    with built.sessions() as session:
        report = stats_report(session)
    assert [(r["campaign"], r["spam_reports"]) for r in report.campaigns] == [
        ("black-friday", 1),
        ("spring", 2),
    ]
    assert [r.get("campaign") or r["step"] for r in report.flagged()] == [1, "spring"]


def consent(app: App, *rows: tuple[int, str, int | None]) -> None:
    """Consent events as ``(subscriber id, kind, delivery id)``."""
    with transaction(app.sessions) as session:
        session.execute(
            insert(ConsentEvent),
            [
                {"subscriber_id": sub, "kind": kind, "at": SENT, "delivery_id": delivery}
                for sub, kind, delivery in rows
            ],
        )


def test_link_unsubscribes_count_against_the_email_they_came_from(app: App) -> None:
    """A withdrawal naming a delivery counts for its step or campaign; others do not count."""
    ids = build(app)
    consent(
        app,
        (4, "withdrawn", ids["tips"][3]),
        (5, "withdrawn", ids["spring"][0]),
        (6, "withdrawn", None),  # CLI or SendGrid: no email named
        (7, "confirmed", ids["welcome"][6]),  # not a withdrawal
        (8, "withdrawn", ids["test"][0]),  # a test send is never counted
    )
    with app.sessions() as session:
        rows = sequence_stats(session, SEQ, since=datetime(2026, 11, 1, tzinfo=UTC))
        spring, black_friday = campaign_stats(session, 1), campaign_stats(session, 2)
    assert rows == [
        step_row(SEQ, 0, "system/welcome", **WELCOME),
        step_row(
            SEQ, 1, "tips/meet-your-ql", **{**TIPS, "unsubscribes": 1, "unsubscribe_rate": 0.25}
        ),
        step_row(SEQ, -1, "tutorials/stretch", **ROTATION),
    ]
    assert spring == {**campaign_numbers(2), "unsubscribes": 1, "unsubscribe_rate": 0.001}
    assert black_friday == campaign_numbers(1)


def test_link_and_sendgrid_unsubscribe_from_one_email_count_once(app: App) -> None:
    """welcome[2] already has a SendGrid ``unsubscribe``; the link (twice) adds nothing."""
    ids = build(app)
    consent(
        app,
        (3, "withdrawn", ids["welcome"][2]),
        (3, "withdrawn", ids["welcome"][2]),  # unsubscribed, came back, used the link again
    )
    with app.sessions() as session:
        first = sequence_stats(session, SEQ, since=datetime(2026, 11, 1, tzinfo=UTC))[0]
    assert first == step_row(SEQ, 0, "system/welcome", **WELCOME)
    consent(app, (4, "withdrawn", ids["welcome"][3]))
    with app.sessions() as session:
        first = sequence_stats(session, SEQ, since=datetime(2026, 11, 1, tzinfo=UTC))[0]
    assert (first["unsubscribes"], first["unsubscribe_rate"]) == (2, 0.222222)


@pytest.fixture
def run(cli_env: dict[str, Any]) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["stats", *args], env=cli_env, catch_exceptions=False)

    return invoke


@pytest.fixture
def cli_app(cli_env: dict[str, Any]) -> Any:
    application = App(load_settings(cli_env))
    yield application
    application.close()


def test_cli_json(run: Any, cli_app: App) -> None:
    """JSON carries every number, the rates and the flag; the warning goes to stderr."""
    build(cli_app)
    result = run("--format", "json", "--since", "2026-11-01")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["since"] == "2026-10-31T23:00:00+00:00"  # midnight in Europe/Berlin
    assert data["spam_flag_rate"] == 0.001
    # steps are numbered from 1 in JSON too: the welcome is step 1
    assert data["sequences"][0] == step_row(SEQ, 1, "system/welcome", **WELCOME)
    assert [c["campaign"] for c in data["campaigns"]] == ["black-friday", "spring"]
    assert data["campaigns"][1] == {
        "campaign": "spring",
        "item": "campaigns/seven-day-reset",
        **campaign_numbers(2),
    }
    assert after_context(result.stderr).splitlines() == [
        "warning: spam-report rate 25.00% for sequence 'back-pain-basics' step 2 "
        "(tips/meet-your-ql) is above 0.1%; check where these addresses came from and how "
        "they consented before sending more",
        "warning: spam-report rate 0.20% for campaign 'spring' is above 0.1%; check where "
        "these addresses came from and how they consented before sending more",
    ]


def test_cli_table(run: Any, cli_app: App) -> None:
    """The table for people: counts with rates, steps numbered from 1, flagged spam marked;
    human opens and clicks with the machine ones beside them."""
    build(cli_app)
    result = run("--since", "30d", "--now", "2026-11-24T09:00:00+00:00")
    assert result.exit_code == 0
    assert [line.rstrip() for line in result.stdout.splitlines()] == TABLE.splitlines()


# The pinned table (wider than a source line): tests/data/stats_table.txt
TABLE = (Path(__file__).parent / "data" / "stats_table.txt").read_text()


def test_cli_nothing_sent(run: Any) -> None:
    result = run("--since", "2026-11-01T00:00:00+00:00")
    assert result.exit_code == 0
    assert result.stdout == "no emails sent since 2026-11-01T00:00+00:00\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-01", datetime(2026, 10, 31, 23, 0, tzinfo=UTC), id="date-local"),
        pytest.param("2026-07-01", datetime(2026, 6, 30, 22, 0, tzinfo=UTC), id="summer-time"),
        pytest.param("2026-11-01T06:00", datetime(2026, 11, 1, 6, 0, tzinfo=UTC), id="naive-utc"),
        pytest.param(
            "2026-11-01T06:00+02:00", datetime(2026, 11, 1, 4, 0, tzinfo=UTC), id="offset"
        ),
        pytest.param("7d", NOW - timedelta(days=7), id="days"),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, zone="Europe/Berlin", now=NOW) == expected


def test_bad_since_says_what_to_type(run: Any) -> None:
    result = run("--since", "last week")
    assert result.exit_code == 2
    assert "'last week' is not a date; use 2026-11-01, 2026-11-01T09:00:00+01:00 or 30d" in (
        result.output
    )


def test_sequence_show_carries_each_steps_numbers(cli_env: dict[str, Any], cli_app: App) -> None:
    """``sequence show`` puts the stats next to each step (same numbers as ``stats``)."""
    build(cli_app)
    show = CliRunner().invoke(
        main, ["sequence", "show", SEQ, "--format", "csv"], env=cli_env, catch_exceptions=False
    )
    lines = show.stdout.splitlines()
    assert lines[0] == "step,after,item,subject,sent,delivered,opens,clicks,spam_reports"
    assert lines[1].startswith("1,0d,system/welcome,")
    assert lines[1].endswith(",11,9,6,3,0")
    assert lines[2].endswith(",4,4,1,0,1")
    as_json = CliRunner().invoke(
        main, ["sequence", "show", SEQ, "--format", "json"], env=cli_env, catch_exceptions=False
    )
    first = json.loads(as_json.stdout)[0]
    assert first["stats"]["unsubscribes"] == 1
    assert first["stats"]["open_rate"] == WELCOME["open_rate"]
