"""``newsletter events ...``: the SendGrid event inbox (bodies accepted, not yet applied)."""

from __future__ import annotations

import click

from newsletter.cli.support import FORMATS, emit, get_app


@click.group()
def events() -> None:
    """SendGrid events: the inbox of webhook bodies waiting to be applied."""


@events.command("inbox")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option(
    "--retry",
    "retry_ids",
    type=int,
    multiple=True,
    help="Make the body with this id, kept with a problem, pending again (repeatable).",
)
def inbox(fmt: str, retry_ids: tuple[int, ...]) -> None:
    """Bodies not applied yet: pending ones, and ones kept aside with the problem that
    stopped them (the drain skips those until retried)."""
    from newsletter.db import transaction
    from newsletter.events.inbox import inbox_rows, retry

    app = get_app()
    with transaction(app.sessions) as session:
        if retry_ids:
            retried = retry(session, retry_ids)
            click.echo(f"{retried} of {len(retry_ids)} bodies pending again", err=True)
        rows = inbox_rows(session)
    emit(
        [
            {
                "id": r.id,
                "state": "problem" if r.problem else "pending",
                "received_at": r.received_at.isoformat(),
                "bytes": r.size,
                "problem": r.problem or "",
            }
            for r in rows
        ],
        ("id", "state", "received_at", "bytes", "problem"),
        fmt,
        title=lambda n: f"{n} bodies not applied",
    )
