"""``newsletter subscribers plan|timeline``: one subscriber's attention, ahead and behind."""

from __future__ import annotations

import json

import click

from newsletter.cli.subscribers import subscribers
from newsletter.cli.support import emit, get_app, parse_now, user_errors


@subscribers.command("plan")
@click.argument("email")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--now", "now_text", hidden=True)
def plan(email: str, days: int, fmt: str, now_text: str | None) -> None:
    """What EMAIL will get in the next --days days and when, with the marketing cap,
    priorities and their preference-centre choices applied."""
    from newsletter.attention.plan import plan_subscriber

    app = get_app()
    with user_errors():
        planned = plan_subscriber(app, email, now=parse_now(now_text), days=days)
    rows = [
        {
            "at": p.at.strftime("%Y-%m-%d %H:%M UTC"),
            "item": p.item_id,
            "from": p.source,
            "status": p.status,
            "note": p.note,
        }
        for p in planned
    ]
    if fmt == "table" and not rows:
        click.echo(f"nothing planned for {email} in the next {days} days")
        return
    emit(rows, ["at", "item", "from", "status", "note"], fmt)


@subscribers.command("timeline")
@click.argument("email")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def timeline(email: str, fmt: str) -> None:
    """Everything about EMAIL in time order: consent, enrollments, every ledger row
    (planned, deferred with the reason, sent, skipped), provider events, preferences,
    opens and clicks, bounce reports, shop events and a pending sunset notice."""
    from newsletter.attention.timeline import timeline as build

    app = get_app()
    with user_errors():
        entries = build(app, email)
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in entries]))
        return
    for e in entries:
        detail = f"  {e.detail}" if e.detail else ""
        click.echo(f"{e.at:%Y-%m-%d %H:%M} UTC  {e.source:<11} {e.what}{detail}")
