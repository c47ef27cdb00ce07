"""``newsletter stats``: per sequence step and per campaign, a table for people, JSON for scripts.

``--since`` takes a date (``YYYY-MM-DD``, midnight in ``NEWSLETTER_DEFAULT_TIMEZONE``, the
zone the marketer works in), an ISO-8601 time (naive means UTC), or ``Nd`` for the last N
days. The spam-report rate is marked ``!`` and a warning goes to stderr when it passes
0.1%; JSON carries a ``flagged`` field per row instead. Opens and clicks are human;
machine opens and clicks (``machine_opens``, ``machine_clicks`` in JSON) stand beside them.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console
from rich.table import Table

from newsletter.cli.support import get_app, parse_now, user_errors
from newsletter.stats import (
    SPAM_FLAG_RATE,
    StatsReport,
    numbered_steps,
    stats_report,
    step_number,
)

_DAYS = re.compile(r"([0-9]{1,5})d")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
COLUMNS = (
    ("sent", None),
    ("delivered", "delivered_rate"),
    ("opens", "open_rate"),
    ("machine\nopens", None),
    ("clicks", "click_rate"),
    ("machine\nclicks", None),
    ("bounces", "bounce_rate"),
    ("spam", "spam_rate"),
    ("unsubs", "unsubscribe_rate"),
)


def parse_since(value: str, *, zone: str, now: datetime) -> datetime:
    """``--since`` as an aware UTC datetime; ``click.BadParameter`` with an example."""
    text = value.strip()
    days = _DAYS.fullmatch(text)
    if days:
        return now - timedelta(days=int(days.group(1)))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use 2026-11-01, 2026-11-01T09:00:00+01:00 or 30d",
            param_hint="--since",
        ) from None
    if _DATE.fullmatch(text):
        return parsed.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@click.command("stats")
@click.option("--since", "since_text", help="Only emails sent since: YYYY-MM-DD, ISO time or Nd.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for scripts.",
)
@click.option("--now", "now_text", hidden=True, help="Take Nd relative to this ISO time (tests).")
def stats(since_text: str | None, fmt: str, now_text: str | None) -> None:
    """Per sequence step and campaign: sent, delivered, opened, clicked, bounced, spam, unsubs.

    Opens and clicks are human ones; machine opens and clicks are counted beside them.
    """
    app = get_app()
    since = None
    if since_text is not None:
        now = parse_now(now_text)
        since = parse_since(since_text, zone=app.settings.default_timezone, now=now)
    with user_errors(), app.sessions() as session:
        report = stats_report(session, since=since)
    if fmt == "json":
        click.echo(json.dumps(_as_json(report), default=str))
    else:
        _print_tables(report)
    for row in report.flagged():
        name = f"campaign {row['campaign']!r}" if "campaign" in row else _step_name(row)
        click.echo(
            f"warning: spam-report rate {_percent(row['spam_rate'], 2)} for {name} is above "
            f"{SPAM_FLAG_RATE:.1%}; check where these addresses came from and how they "
            "consented before sending more",
            err=True,
        )


def _as_json(report: StatsReport) -> dict[str, Any]:
    return {
        "since": report.since.isoformat() if report.since else None,
        "spam_flag_rate": SPAM_FLAG_RATE,
        # Steps are numbered from 1, as in the tables and in `sequence show`.
        "sequences": numbered_steps(report.sequences),
        "campaigns": report.campaigns,
    }


def _print_tables(report: StatsReport) -> None:
    if not report.sequences and not report.campaigns:
        since = f" since {report.since.isoformat(timespec='minutes')}" if report.since else ""
        click.echo(f"no emails sent{since}")
        return
    console = Console(width=max(120, shutil.get_terminal_size().columns), soft_wrap=False)
    names = list(dict.fromkeys(row["sequence"] for row in report.sequences))
    for name in names:
        table = _table(f"Sequence {name or '(unknown: subscriber forgotten)'}", ("step", "item"))
        for row in report.sequences:
            if row["sequence"] == name:
                table.add_row(str(step_number(row["step"])), row["item"], *_cells(row))
        console.print(table)
    if report.campaigns:
        table = _table("Campaigns", ("campaign",))  # the item is in `campaign show` and JSON
        for row in report.campaigns:
            table.add_row(row["campaign"], *_cells(row))
        console.print(table)


def _table(title: str, names: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name in names:
        table.add_column(name)
    for name, _ in COLUMNS:
        table.add_column(name, justify="right")
    return table


def _cells(row: dict[str, Any]) -> list[str]:
    """Each count with its rate on the line below; a flagged spam rate is marked ``!``."""
    cells = []
    for name, rate in COLUMNS:
        count = row[_COUNT.get(name, name)]
        if rate is None:
            cells.append(str(count))
            continue
        digits = 2 if name == "spam" else 1
        mark = " !" if name == "spam" and row["flagged"] else ""
        cells.append(f"{count}\n{_percent(row[rate], digits)}{mark}")
    return cells


_COUNT = {
    "spam": "spam_reports",
    "unsubs": "unsubscribes",
    "machine\nopens": "machine_opens",
    "machine\nclicks": "machine_clicks",
}


def _percent(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _step_name(row: dict[str, Any]) -> str:
    number = step_number(row["step"])
    step = "then" if number == "then" else f"step {number}"
    return f"sequence {row['sequence']!r} {step} ({row['item']})"
