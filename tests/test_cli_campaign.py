"""``newsletter campaign ...`` through click's CliRunner, with exact output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from bench.bench_campaign_memory import insert_subscribers
from newsletter.app import App
from newsletter.cli import main
from newsletter.models import Delivery
from newsletter.settings import load_settings
from tests.cli_output import after_context
from tests.mailbox import read_outbox

NOW = "2026-11-24T09:00:00+00:00"
ITEM = "campaigns/seven-day-reset"
Run = Callable[..., Result]


@pytest.fixture
def app(cli_env: dict[str, Any]) -> Iterator[App]:
    """Ten subscribers: 1-3 tagged desk, 4-9 back, 10 vip+back; zone by n % 4: Europe/Berlin,
    America/New_York, Asia/Tokyo, UTC (see ``bench_campaign_memory``)."""
    application = App(load_settings(cli_env))
    insert_subscribers(application.engine, 10)
    yield application
    application.close()


@pytest.fixture
def run(cli_env: dict[str, Any], app: App) -> Run:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, code: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=cli_env, input=input)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return invoke


def create(run: Run, *extra: str) -> Result:
    return run(
        "campaign", "create", ITEM, "--tag", "back", "--exclude-tag", "vip", *extra, "--now", NOW
    )


def test_create_shows_the_audience_and_the_next_steps(run: Run) -> None:
    result = create(run)
    assert result.stdout == (
        "created draft 'seven-day-reset': campaigns/seven-day-reset to 6 active subscribers "
        "(tags: any of back; none of vip)\n"
        "next: newsletter campaign test seven-day-reset --to YOU@EXAMPLE.COM, then "
        "newsletter campaign schedule seven-day-reset --at 'YYYY-MM-DD HH:MM'\n"
    )
    show = run("campaign", "show", "seven-day-reset")
    assert show.stdout == (
        "campaign:  seven-day-reset (draft)\n"
        "item:      campaigns/seven-day-reset\n"
        "segment:   tags: any of back; none of vip\n"
        "schedule:  -\n"
        "audience:  6 active subscribers now (frozen when it starts)\n"
        "drips:     continue while it sends\n"
        "counts:    queued 0, sent 0, failed 0, unknown 0, skipped 0\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("campaigns/seven-day-rest",),
            "Error: no content item 'campaigns/seven-day-rest'; "
            "did you mean 'campaigns/seven-day-reset'?\n",
        ),
        (
            (ITEM, "--tag", "nobody"),
            "Error: no active subscriber matches (tags: any of nobody); check the tags with "
            "`newsletter subscribers list --status active --tag TAG`\n",
        ),
        (
            ("system/confirmation",),
            "Error: 'system/confirmation' is a transactional email without an unsubscribe "
            "footer; pick an item from content/campaigns/ (see `newsletter content list`)\n",
        ),
    ],
    ids=["unknown-item", "empty-segment", "transactional"],
)
def test_create_refusals(run: Run, args: tuple[str, ...], message: str) -> None:
    result = run("campaign", "create", *args, "--now", NOW, code=1)
    assert result.stderr.endswith(message)
    assert run("campaign", "list", "--format", "json").stdout == "[]\n"


def test_schedule_in_the_marketers_zone_then_list(run: Run) -> None:
    create(run)
    result = run(
        "campaign", "schedule", "seven-day-reset", "--at", "2026-12-01 09:00", "--now", NOW
    )
    assert result.stdout == (
        "scheduled 'seven-day-reset' for 2026-12-01 09:00 Europe/Berlin\n"
        "starts 2026-12-01T08:00+00:00; audience now 6 (frozen when it starts)\n"
    )
    other = run(
        "campaign",
        "schedule",
        "seven-day-reset",
        "--at",
        "2026-12-01 09:00",
        "--timezone",
        "America/New_York",
        "--now",
        NOW,
    )
    assert other.stdout.splitlines()[0] == (
        "scheduled 'seven-day-reset' for 2026-12-01 09:00 America/New_York"
    )
    listed = run("campaign", "list", "--format", "csv")
    assert listed.stdout == (
        "name,state,audience,schedule,sent,queued,failed\n"
        "seven-day-reset,scheduled,6,2026-12-01 09:00 America/New_York,0,0,0\n"
    )
    table = run("campaign", "list")
    assert "seven-day-reset" in table.stdout
    assert "America/New_York" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--at", "2026-11-24 08:00"),
            "Error: 2026-11-24 08:00 Europe/Berlin is in the past (now 2026-11-24 10:00 "
            "Europe/Berlin); pick a later --at, or use `newsletter campaign send NAME` to send "
            "now\n",
        ),
        (
            ("--at", "2028-01-01 09:00"),
            "Error: 2028-01-01 09:00 Europe/Berlin is more than 365 days ahead; pick an earlier "
            "--at (limit: NEWSLETTER_CAMPAIGN_MAX_SCHEDULE_DAYS)\n",
        ),
        (
            ("--at", "next tuesday"),
            "Error: cannot read the time 'next tuesday'; use e.g. '2026-12-01 09:00' or "
            "2026-12-01T09:00:00+01:00\n",
        ),
        (
            ("--at", "2026-12-01 09:00", "--timezone", "Europe/Berlln"),
            "Error: unknown time zone 'Europe/Berlln' for --timezone; use an IANA name such as "
            "Europe/Berlin (`newsletter timezones` lists them)\n",
        ),
        (
            # Tokyo (a subscriber's zone) reaches 09:00 at 00:00 UTC, before "now"
            ("--at", "2026-11-24 09:30", "--local-time"),
            "Error: 2026-11-24 09:30 Asia/Tokyo is in the past (now 2026-11-24 18:00 "
            "Asia/Tokyo); pick a later --at, or use `newsletter campaign send NAME` to send "
            "now\n",
        ),
    ],
    ids=["past", "too-far", "unreadable", "bad-zone", "local-time-past-in-first-zone"],
)
def test_schedule_refusals(run: Run, args: tuple[str, ...], message: str) -> None:
    create(run)
    result = run("campaign", "schedule", "seven-day-reset", *args, "--now", NOW, code=1)
    assert result.stderr.endswith(message)
    assert (
        json.loads(run("campaign", "show", "seven-day-reset", "--format", "json").stdout)["state"]
        == "draft"
    )


def test_local_time_pause_resume_cancel(run: Run, app: App) -> None:
    """Local time: Tokyo at 00:00 UTC, Berlin 08:00, UTC 09:00, New York 14:00."""
    create(run)
    result = run(
        "campaign",
        "schedule",
        "seven-day-reset",
        "--at",
        "2026-12-01 09:00",
        "--local-time",
        "--now",
        NOW,
    )
    assert result.stdout == (
        "scheduled 'seven-day-reset' for 2026-12-01 09:00 in each subscriber's time zone\n"
        "first zone starts 2026-12-01T00:00+00:00; audience now 6 (frozen when it starts)\n"
    )
    run("tick", "--now", "2026-12-01T00:00:00+00:00")
    with app.sessions() as session:
        due = sorted(
            (d.isoformat(), n)
            for d, n in session.execute(select(Delivery.due_at, Delivery.subscriber_id))
        )
    assert due == [
        ("2026-12-01T00:00:00+00:00", 6),
        ("2026-12-01T08:00:00+00:00", 4),
        ("2026-12-01T08:00:00+00:00", 8),
        ("2026-12-01T09:00:00+00:00", 7),
        ("2026-12-01T14:00:00+00:00", 5),
        ("2026-12-01T14:00:00+00:00", 9),
    ]
    assert run("campaign", "show", "seven-day-reset").stdout == (
        "campaign:  seven-day-reset (sending)\n"
        "item:      campaigns/seven-day-reset\n"
        "segment:   tags: any of back; none of vip\n"
        "schedule:  2026-12-01 09:00 in each subscriber's time zone\n"
        "audience:  6\n"
        "drips:     continue while it sends\n"
        "counts:    queued 5, sent 1, failed 0, unknown 0, skipped 0\n"
        "progress:  [#####-------------------------]  17%  1/6\n"
        "started:   2026-12-01 01:00 Europe/Berlin\n"
        "events:    delivered 0, opens 0, clicks 0, bounces 0, spam reports 0, unsubscribes 0\n"
    )
    paused = run("campaign", "pause", "seven-day-reset", "--now", "2026-12-01T00:01:00+00:00")
    assert paused.stdout == (
        "'seven-day-reset' is paused: queued 5, sent 1, failed 0, unknown 0, skipped 0\n"
    )
    run("tick", "--now", "2026-12-01T08:00:00+00:00")
    assert len(read_outbox(app.settings.effective_outbox_dir)) == 1
    resumed = run("campaign", "resume", "seven-day-reset", "--now", "2026-12-01T08:00:00+00:00")
    assert resumed.stdout == (
        "'seven-day-reset' is sending: queued 5, sent 1, failed 0, unknown 0, skipped 0\n"
    )
    run("tick", "--now", "2026-12-01T08:00:00+00:00")
    assert len(read_outbox(app.settings.effective_outbox_dir)) == 3
    cancelled = run("campaign", "cancel", "seven-day-reset", "--now", "2026-12-01T08:01:00+00:00")
    assert cancelled.stdout == (
        "'seven-day-reset' is cancelled: queued 0, sent 3, failed 0, unknown 0, skipped 3\n"
    )
    run("tick", "--now", "2026-12-01T15:00:00+00:00")
    assert len(read_outbox(app.settings.effective_outbox_dir)) == 3
    shown = json.loads(run("campaign", "show", "seven-day-reset", "--format", "json").stdout)
    assert {k: shown[k] for k in ("state", "audience", "audience_frozen", "finished_at")} == {
        "state": "cancelled",
        "audience": 6,
        "audience_frozen": True,
        "finished_at": "2026-12-01T08:01:00+00:00",
    }
    assert shown["counts"] == {
        "queued": 0,
        "leased": 0,
        "sending": 0,
        "sent": 3,
        "failed": 0,
        "unknown": 0,
        "skipped": 3,
    }
    assert shown["stats"]["sent"] == 3


def test_test_send_goes_only_to_the_seed_addresses(run: Run, app: App) -> None:
    create(run)
    result = run(
        "campaign",
        "test",
        "seven-day-reset",
        "--to",
        "Me@Example.com",
        "--to",
        "you@example.com",
        "--now",
        NOW,
    )
    assert result.stdout == "me@example.com: sent\nyou@example.com: sent\n"
    messages = read_outbox(app.settings.effective_outbox_dir)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "me@example.com",
        "you@example.com",
    ]
    assert all(m["Subject"] == "[TEST] Join the 7-day back reset, Alex" for m in messages)
    shown = json.loads(run("campaign", "show", "seven-day-reset", "--format", "json").stdout)
    assert (shown["state"], shown["audience"], sum(shown["counts"].values())) == ("draft", 6, 0)
    bad = run("campaign", "test", "seven-day-reset", "--to", "not-an-address", "--now", NOW, code=1)
    assert after_context(bad.stderr).startswith("Error: invalid email address 'not-an-address'")


def test_send_now_asks_first_then_freezes_the_audience(run: Run, app: App) -> None:
    create(run)
    declined = run("campaign", "send", "seven-day-reset", "--now", NOW, input="n\n", code=1)
    assert declined.stdout == (
        "Send 'seven-day-reset' (campaigns/seven-day-reset) to 6 subscribers now? [y/N]: n\n"
    )
    sent = run("campaign", "send", "seven-day-reset", "--now", NOW, input="y\n")
    assert sent.stdout.endswith(
        "sending 'seven-day-reset': 6 emails queued; the deliver job sends them "
        "(newsletter serve / worker, or newsletter tick)\n"
    )
    run("tick", "--now", NOW)
    run("tick", "--now", NOW)
    assert len(read_outbox(app.settings.effective_outbox_dir)) == 6
    shown = json.loads(run("campaign", "show", "seven-day-reset", "--format", "json").stdout)
    assert (shown["state"], shown["counts"]["sent"]) == ("sent", 6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("edit", "seven-day-reset", "--tag", "desk"),
            "Error: campaign 'seven-day-reset' is sent and cannot be changed (only draft or "
            "scheduled campaigns can be edited); create a new campaign instead\n",
        ),
        (
            ("schedule", "seven-day-reset", "--at", "2026-12-01 09:00"),
            "Error: campaign 'seven-day-reset' is sent and cannot be changed (only draft or "
            "scheduled campaigns can be scheduled); create a new campaign instead\n",
        ),
        (
            ("delete", "seven-day-reset"),
            "Error: campaign 'seven-day-reset' is sent and cannot be changed (only draft or "
            "scheduled campaigns can be deleted); create a new campaign instead\n",
        ),
        (
            ("pause", "seven-day-reset"),
            "Error: campaign 'seven-day-reset' is sent; only scheduled or sending campaigns "
            "can pause\n",
        ),
        (
            ("cancel", "seven-day-reset"),
            "Error: campaign 'seven-day-reset' is already sent; nothing to cancel\n",
        ),
    ],
    ids=["edit", "schedule", "delete", "pause", "cancel"],
)
def test_a_sent_campaign_cannot_be_changed(run: Run, args: tuple[str, ...], message: str) -> None:
    create(run)
    run("campaign", "send", "seven-day-reset", "--yes", "--now", NOW)
    run("tick", "--now", NOW)
    run("tick", "--now", NOW)
    result = (
        run("campaign", *args, "--now", NOW, code=1)
        if args[0] != "delete"
        else run("campaign", *args, code=1)
    )
    assert result.stderr.endswith(message)


def test_edit_and_delete_a_draft(run: Run) -> None:
    create(run)
    edited = run(
        "campaign", "edit", "seven-day-reset", "--tag", "desk", "--pause-drips", "--now", NOW
    )
    assert edited.stdout == (
        "updated draft 'seven-day-reset': campaigns/seven-day-reset to 3 active subscribers "
        "(tags: any of desk; none of vip)\n"
    )
    everyone = run("campaign", "edit", "seven-day-reset", "--all-subscribers", "--now", NOW)
    assert everyone.stdout == (
        "updated draft 'seven-day-reset': campaigns/seven-day-reset to 10 active subscribers "
        "(all active subscribers)\n"
    )
    assert run("campaign", "delete", "seven-day-reset").stdout == "deleted 'seven-day-reset'\n"
    missing = run("campaign", "show", "seven-day-reset", code=1)
    assert after_context(missing.stderr) == (
        "Error: no campaign named 'seven-day-reset'; run `newsletter campaign list`\n"
    )


def test_every_campaign_command_has_help(run: Run, tmp_path: Path) -> None:
    for command in (
        "create",
        "edit",
        "delete",
        "schedule",
        "send",
        "test",
        "list",
        "show",
        "pause",
        "resume",
        "cancel",
    ):
        result = run("campaign", command, "--help")
        assert "Usage: main campaign" in result.stdout or "Usage: " in result.stdout
        assert "--now" not in result.stdout


def test_edit_refuses_to_move_a_local_time_start_into_the_past(run: Run) -> None:
    """The reviewer's repro: an Auckland subscriber joins a Los Angeles campaign's segment."""
    run("subscribers", "add", "la@example.org", "--timezone", "America/Los_Angeles",
        "--tag", "west", "--confirmed", "--now", NOW)  # fmt: skip
    run("campaign", "create", ITEM, "--tag", "west", "--name", "c2", "--now", NOW)
    run("campaign", "schedule", "c2", "--at", "2026-12-01 09:00", "--local-time",
        "--now", "2026-11-30T00:00:00Z")  # fmt: skip
    run("subscribers", "add", "akl@example.org", "--timezone", "Pacific/Auckland",
        "--tag", "west", "--confirmed", "--now", NOW)  # fmt: skip
    before = json.loads(run("campaign", "show", "c2", "--format", "json").stdout)
    edited = run("campaign", "edit", "c2", "--pause-drips", "--now", "2026-12-01T08:00:00Z", code=1)
    assert edited.stdout == ""
    assert after_context(edited.stderr) == (
        "Error: campaign 'c2' not changed: 2026-12-01 09:00 in Pacific/Auckland (the earliest "
        "zone of the edited audience) is 2026-11-30 20:00 UTC, which would move the start from "
        "2026-12-01 17:00 UTC, in the past (now 2026-12-01 08:00 UTC); reschedule it with a "
        "later time (`newsletter campaign schedule c2 --at 'YYYY-MM-DD HH:MM' --local-time`) "
        "and edit again, or send it now with `newsletter campaign send c2`\n"
    )
    run("tick", "--now", "2026-12-01T08:00:00Z")
    after = json.loads(run("campaign", "show", "c2", "--format", "json").stdout)
    assert after == before
    assert (after["state"], after["scheduled_at"], after["pause_drips"]) == (
        "scheduled",
        "2026-12-01T17:00:00+00:00",
        False,
    )
