"""``subscribers plan``, ``subscribers timeline``, ``campaign create --priority/--topic``
and ``sequence simulate`` with the cap, through CliRunner with exact output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from tests.cli_output import after_context

Run = Callable[..., Result]
T0 = "2026-12-01T08:00:00+00:00"


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
