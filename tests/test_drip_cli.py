"""``newsletter sequence list|show|simulate`` and ``newsletter delivery retry-unknown``."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.models import Delivery
from newsletter.settings import load_settings
from tests.test_smtp_mailer import NOW, add_subscribers


def run(env: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_sequence_list_as_json(cli_env: dict[str, Any]) -> None:
    result = run(cli_env, "sequence", "list", "--format", "json")
    assert result.exit_code == 0
    [row] = [r for r in json.loads(result.stdout) if r["name"] == "back-pain-basics"]
    assert row["enroll"] == "on_confirm"
    assert row["window"] == "08:00-11:00"
    assert row["then"] == "every 4d from tips, testimonials, tutorials"


def test_sequence_show_lists_each_step(cli_env: dict[str, Any]) -> None:
    result = run(cli_env, "sequence", "show", "back-pain-basics", "--format", "csv")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "step,after,item,subject,sent,delivered,opens,clicks,spam_reports"
    assert lines[1].startswith("1,0d,system/welcome,")
    assert lines[2].startswith("2,2d,tips/meet-your-ql,")


def test_sequence_simulate_prints_local_and_utc_times_across_dst(cli_env: dict[str, Any]) -> None:
    result = run(
        cli_env,
        "sequence",
        "simulate",
        "back-pain-basics",
        "--signup",
        "2026-03-05T21:30",
        "--timezone",
        "America/New_York",
        "--rotations",
        "1",
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "n,step,item,local,utc",
        "1,1,system/welcome,2026-03-05 21:30 EST,2026-03-06T02:30Z",
        "2,2,tips/meet-your-ql,2026-03-08 08:00 EDT,2026-03-08T12:00Z",
        "3,3,tips/gentle-pressure,2026-03-11 08:00 EDT,2026-03-11T12:00Z",
    ]
    # 9 steps, one of them example content (never sent), then the rotation
    assert lines[-1].startswith("9,then,tips/")


def test_sequence_errors_say_what_to_do(cli_env: dict[str, Any]) -> None:
    unknown = run(cli_env, "sequence", "show", "nope")
    assert unknown.exit_code == 1
    assert (
        "no sequence named 'nope' (known: back-pain-basics, first-week-with-your-tool)"
        in unknown.stderr
    )
    zone = run(cli_env, "sequence", "simulate", "back-pain-basics", "--timezone", "Mars/Base")
    assert zone.exit_code == 2
    assert "unknown time zone 'Mars/Base'" in zone.stderr


def test_retry_unknown_requeues_only_unknown_rows(cli_env: dict[str, Any]) -> None:
    app = App(load_settings(cli_env))
    app.migrate()
    ids = add_subscribers(app, ["a", "b"])
    with transaction(app.sessions) as session:
        row = session.get(Delivery, ids["a"])
        assert row is not None
        row.status, row.updated_at = "unknown", NOW
    result = run(cli_env, "delivery", "retry-unknown", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "requeued 1 deliveries; the next deliver run sends them\n"
    with app.sessions() as session:
        statuses = dict(session.execute(select(Delivery.id, Delivery.status)).all())
    app.close()
    assert statuses == {ids["a"]: "queued", ids["b"]: "queued"}
    again = run(cli_env, "delivery", "retry-unknown", "--yes")
    assert again.stdout == "no deliveries with an unknown outcome\n"
