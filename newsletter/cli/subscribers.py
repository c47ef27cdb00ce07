"""``newsletter subscribers ...``: add, import, list, show, export, unsubscribe, forget,
sunset."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import click

from newsletter.cli.support import FORMATS, emit, get_app, parse_now, user_errors
from newsletter.models import SubscriberStatus

COLUMNS = ("email", "first_name", "status", "timezone", "tags", "created_at")
TABLE_LIMIT = 50


@click.group()
def subscribers() -> None:
    """Manage the subscriber list."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", "first_name", help="First name used in greetings.")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--confirmed", is_flag=True, help="Consent was given elsewhere: skip double opt-in.")
@click.option("--now", "now_text", hidden=True)
def add(
    email: str,
    first_name: str | None,
    timezone: str | None,
    tags: tuple[str, ...],
    confirmed: bool,
    now_text: str | None,
) -> None:
    """Add one subscriber; without --confirmed a confirmation email is sent."""
    from newsletter.subscribers import add_subscriber

    app = get_app()
    with user_errors():
        result = add_subscriber(
            app,
            email,
            first_name=first_name,
            timezone=timezone,
            tags=tags,
            confirmed=confirmed,
            now=parse_now(now_text),
        )
    messages = {
        "activated": "added and active",
        "already_active": "already active",
        "confirmation_queued": "added; confirmation email queued",
        "throttled": "pending; a confirmation email was sent less than an hour ago",
    }
    click.echo(f"{result.email}: {messages.get(result.outcome, result.outcome)}")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--confirmed", is_flag=True, help="The list's earlier consent is recorded.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write skipped rows and rows with an unknown time zone (line, email, reason) to "
    "this CSV file.",
)
@click.option(
    "--yes", is_flag=True, help="Do not ask before queueing confirmation emails (scripts)."
)
@click.option("--now", "now_text", hidden=True)
def import_(
    file: Path, confirmed: bool, report_path: Path | None, yes: bool, now_text: str | None
) -> None:
    """Import a CSV (columns email, first_name, timezone, tags) of any size.

    Without --confirmed every new address gets a confirmation email: the command says how
    many and asks first (--yes to skip the question).
    """
    from newsletter.importing import count_lines, count_new_addresses, import_csv

    app = get_app()
    with user_errors():  # a directory or unreadable file: one line, exit 1
        total = count_lines(file)
        if not confirmed:
            new = count_new_addresses(app, file)
    if not confirmed and new and not yes:
        noun = "address" if new == 1 else "addresses"
        email = "email" if new == 1 else "emails"
        click.confirm(
            f"{file.name} has {new:,} new {noun}; without --confirmed each gets a "
            f"confirmation email ({new:,} {email} will be sent). Continue?",
            abort=True,
        )
    stderr = sys.stderr
    with click.progressbar(length=total, label="importing", file=stderr) as bar, user_errors():
        report = import_csv(
            app, file, confirmed=confirmed, now=parse_now(now_text), progress=bar.update
        )
    click.echo(f"taken: {report.taken}, skipped: {len(report.skipped)}")
    for skipped in report.skipped[:20]:
        click.echo(f"  line {skipped.line}: {skipped.email or '(empty)'}: {skipped.reason}")
    if len(report.skipped) > 20:
        click.echo(f"  ... and {len(report.skipped) - 20} more (use --report FILE for all)")
    where = f"listed in {report_path}" if report_path else "use --report FILE to list them"
    for zone, rows in report.unknown_zones.items():
        noun = "row" if rows == 1 else "rows"
        click.echo(
            f"warning: unknown time zone {zone!r} on {rows:,} {noun}; imported with "
            f"{app.settings.default_timezone} ({where}; `newsletter timezones` lists the zones)",
            err=True,
        )
    if report_path is not None:
        import csv

        with report_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "email", "reason"])
            rows_out = sorted([*report.skipped, *report.zone_notes], key=lambda s: s.line)
            for s in rows_out:
                writer.writerow([s.line, s.email, s.reason])


@subscribers.command("list")
@click.option("--status", type=click.Choice([s.value for s in SubscriberStatus]))
@click.option("--tag", help="Only subscribers with this tag.")
@click.option("--search", help="Only addresses or first names containing this text.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    help=f"Show at most this many (default {TABLE_LIMIT} for a table, all for csv/json; 0: all).",
)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def list_(
    status: str | None, tag: str | None, search: str | None, limit: int | None, fmt: str
) -> None:
    """List subscribers, oldest first."""
    from newsletter.subscribers import iter_subscribers

    if limit is None:
        limit = TABLE_LIMIT if fmt == "table" else 0
    rows = iter_subscribers(get_app(), status=status, tag=tag, search=search)
    if limit:
        rows = itertools.islice(rows, limit + 1)  # one more tells whether there are more

    def title(count: int) -> str:
        if limit and count > limit:
            return f"first {limit} subscribers (more match: --limit N, or --limit 0 for all)"
        return f"{count} subscribers"

    if fmt == "table" and limit:
        shown = list(rows)
        emit(shown[:limit], COLUMNS, fmt, title=title(len(shown)))
        return
    emit(itertools.islice(rows, limit) if limit else rows, COLUMNS, fmt, title=title)


@subscribers.command("show")
@click.argument("email")
def show(email: str) -> None:
    """State and history of one subscriber."""
    from newsletter.subscribers import export

    with user_errors():
        data = export(get_app(), email)
    sub = data["subscriber"]
    click.echo(f"{sub['email']}  {sub['status']}  ({sub['timezone']})")
    click.echo(f"name: {sub['first_name'] or '-'}   tags: {','.join(sub['tags']) or '-'}")
    click.echo(f"created: {sub['created_at']}   confirmed: {sub['confirmed_at'] or '-'}")
    click.echo("consent:")
    for c in data["consent"]:
        click.echo(
            f"  {c['at'][:19]}  {c['kind']:<10} ip={c['ip'] or '-'} source={c['source'] or '-'}"
        )
    click.echo("enrollments:")
    for e in data["enrollments"]:
        click.echo(
            f"  {e['sequence']}: {e['status']}, next step {e['next_step']}, "
            f"due {e['next_due_at'] or '-'}"
        )
    click.echo("deliveries:")
    for d in data["deliveries"]:
        click.echo(
            f"  #{d['id']} {d['kind']:<12} {d['item']:<36} {d['status']:<8} {d['sent_at'] or ''}"
        )
    click.echo("engagement:")
    for e in data.get("engagement", []):
        who = "human" if e["human"] else "machine"
        email = f"#{e['delivery_id']}" if e["delivery_id"] else "-"
        click.echo(f"  {e['at'][:19]}  {e['kind']:<11} {who:<7} {email:<7} {e['reason']}")


@subscribers.command("export")
@click.argument("email")
def export_(email: str) -> None:
    """Everything held about one subscriber, as JSON."""
    from newsletter.subscribers import export

    with user_errors():
        click.echo(json.dumps(export(get_app(), email), indent=2))


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--now", "now_text", hidden=True)
def unsubscribe(email: str, now_text: str | None) -> None:
    """Opt a subscriber out at once."""
    from newsletter.subscriptions import unsubscribe_email

    with user_errors():
        unsubscribe_email(get_app(), email, now=parse_now(now_text))
    click.echo(f"{email.strip().lower()}: unsubscribed")


@subscribers.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--now", "now_text", hidden=True)
def forget(email: str, yes: bool, now_text: str | None) -> None:
    """Erase personal data, keeping a hashed suppression (never mailed again)."""
    from newsletter.subscriptions import forget as forget_subscriber

    if not yes:
        click.confirm(f"Erase everything held about {email}?", abort=True)
    with user_errors():
        forget_subscriber(get_app(), email, now=parse_now(now_text))
    click.echo(f"{email.strip().lower()}: forgotten (a hashed suppression is kept)")


@subscribers.command("sunset")
@click.option("--dry-run", is_flag=True, help="Show who would be asked or made inactive.")
@click.option("--now", "now_text", hidden=True)
def sunset(dry_run: bool, now_text: str | None) -> None:
    """List hygiene: ask the long-silent once, then make them inactive (NEWSLETTER_SUNSET_DAYS)."""
    from newsletter.sunset import run_sunset

    app = get_app()
    if not app.settings.sunset_days:
        raise click.ClickException(
            "the sunset policy is off; set NEWSLETTER_SUNSET_DAYS (e.g. 180) to use it"
        )
    with user_errors():
        plan = run_sunset(app, now=parse_now(now_text), dry_run=dry_run)
    verb = ("would be " if dry_run else "") + "{}"
    for title, rows in (
        (verb.format("asked (re-permission email)"), plan.ask),
        (verb.format("kept (engaged since the email)"), plan.revive),
        (verb.format("made inactive"), plan.retire),
    ):
        click.echo(f"{title}: {len(rows)}")
        for _, email in rows:
            click.echo(f"  {email}")
