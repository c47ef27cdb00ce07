"""``newsletter sequence list|show|simulate`` and ``newsletter delivery retry-unknown``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from newsletter.cli.support import FORMATS, emit, get_app, get_settings, parse_now, user_errors
from newsletter.content.library import ContentLibrary, load_library
from newsletter.content.model import Sequence
from newsletter.content.sequences import parse_delay
from newsletter.drip.planning import rotation_pool
from newsletter.drip.simulation import Happening, simulate, start_for, until_exit
from newsletter.errors import NewsletterError
from newsletter.settings import Settings
from newsletter.zones import find_zone


def _settings() -> Settings:
    return get_settings()


def _library(settings: Settings) -> ContentLibrary:
    with user_errors():
        return load_library(settings)


def _sequence(library: ContentLibrary, name: str) -> Sequence:
    with user_errors():
        return library.sequence(name)


def delay_text(delay: timedelta) -> str:
    """``3d``, ``12h``, ``1d12h``, ``0d``: how sequence files write delays."""
    minutes = int(delay.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts) or "0d"


def window_text(sequence: Sequence) -> str:
    window = sequence.send_window
    return f"{window.start:%H:%M}-{window.end:%H:%M}"


def then_text(sequence: Sequence) -> str:
    if sequence.then is None:
        return ""
    return f"every {delay_text(sequence.then.every)} from {', '.join(sequence.then.kinds)}"


@click.group()
def sequence() -> None:
    """Drip sequences: list, show, simulate the send times, enroll or exit subscribers."""


@sequence.command("list")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def list_sequences(fmt: str) -> None:
    """List every sequence: how people join, its steps, send window and rotation."""
    rows = [
        {
            "name": s.name,
            "enroll": s.enroll,
            "steps": len(s.steps),
            "window": window_text(s),
            "then": then_text(s),
            "description": s.description,
        }
        for s in _library(_settings()).sequences()
    ]
    emit(rows, ["name", "enroll", "steps", "window", "then", "description"], fmt)


@sequence.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def show_sequence(name: str, fmt: str) -> None:
    """Show the steps of sequence NAME: delay, item, subject, and what each step achieved
    (sent, delivered, opens, clicks, spam reports; JSON has every count and rate)."""
    from newsletter.stats import sequence_stats

    app = get_app()
    library = app.library
    seq = _sequence(library, name)
    with app.sessions() as session:
        by_item: dict[str, dict[str, Any]] = {}
        for found in sequence_stats(session, seq.name):
            by_item.setdefault(found["item"], found)
    columns = ["step", "after", "item", "subject", *SHOWN_STATS]
    rows = []
    for index, step in enumerate(seq.steps):
        stats = by_item.get(step.item_id, {})
        row: dict[str, Any] = {
            "step": index + 1,
            "after": delay_text(step.after),
            "item": step.item_id,
            "subject": library.item(step.item_id).subject,
        }
        if fmt == "json":
            row["stats"] = {k: v for k, v in stats.items() if k not in ("sequence", "step", "item")}
        else:
            row.update({k: stats.get(k, 0) for k in SHOWN_STATS})
        rows.append(row)
    if fmt == "table":
        click.echo(f"{seq.name}: {seq.description}")
        click.echo(f"enroll: {seq.enroll}; send window {window_text(seq)} local time")
        if seq.triggers.describe_exit():
            reenroll = "; reenroll: true" if seq.triggers.reenroll else ""
            click.echo(f"exit: {seq.triggers.describe_exit()}{reenroll}")
        if seq.then is not None:
            click.echo(f"then: {then_text(seq)} (items not had yet)")
    emit(rows, [*columns, "stats"] if fmt == "json" else columns, fmt)


SHOWN_STATS = ("sent", "delivered", "opens", "clicks", "spam_reports")


@sequence.command("simulate")
@click.argument("name")
@click.option(
    "--signup", "signup_text", help="Sign-up time, ISO-8601; without an offset it is local."
)
@click.option("--timezone", "zone_name", help="The subscriber's IANA zone [default: setting].")
@click.option("--rotations", default=3, show_default=True, type=click.IntRange(0, 100))
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="NAME@WHEN",
    help="An event at WHEN (+5d after sign-up, or ISO-8601), e.g. purchase@+5d.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="NAME@WHEN",
    help="A tag added at WHEN, e.g. customers@+2d.",
)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def simulate_sequence(
    name: str,
    signup_text: str | None,
    zone_name: str | None,
    rotations: int,
    events: tuple[str, ...],
    tags: tuple[str, ...],
    fmt: str,
) -> None:
    """Print the exact local and UTC send time of every step of NAME (and a few rotation
    items) for a subscriber who confirms at --signup in --timezone, assuming each email
    goes out when due, with the marketing cap (NEWSLETTER_MARKETING_CAP) applied: a step
    the cap moves shows why in a ``note`` column. --event and --tag show what triggers do:
    the steps an exit stops and the sequences an event or tag starts."""
    from newsletter.attention.plan import simulate_sequence
    from newsletter.attention.policy import build_policy

    settings = _settings()
    library = _library(settings)
    seq = _sequence(library, name)
    zone = _zone(zone_name or settings.default_timezone)
    signup = _signup(signup_text, zone)
    happenings = [
        *(_happening("event", text, signup, zone) for text in events),
        *(_happening("tag", text, signup, zone) for text in tags),
    ]
    if happenings:
        _simulate_with_triggers(library, seq, signup, zone, rotations, happenings, fmt)
        return
    with user_errors():
        policy = build_policy(settings, library)
    sends = simulate_sequence(policy, library, seq, signup=signup, zone=zone, rotations=rotations)
    steps = {s.item_id: i for i, s in enumerate(seq.steps)}
    rows = [
        {
            "n": number,
            "step": steps[send.item_id] + 1 if send.item_id in steps else "then",
            "item": send.item_id,
            "local": send.at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
            "utc": send.at.strftime("%Y-%m-%dT%H:%MZ"),
            "note": send.note,
        }
        for number, send in enumerate(sends, start=1)
    ]
    if fmt == "table":
        local = signup.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        click.echo(f"{seq.name} for a subscriber confirming {local} in {zone}")
    columns = ["n", "step", "item", "local", "utc"]
    if any(row["note"] for row in rows):
        columns.append("note")
    emit(rows, columns, fmt)


def _happening(kind: str, text: str, signup: datetime, zone: ZoneInfo) -> Happening:
    option = f"--{kind}"
    name, sep, when = text.partition("@")
    if not sep or not name.strip() or not when.strip():
        raise click.BadParameter(
            f"{text!r}: write NAME@WHEN, e.g. purchase@+5d or purchase@2026-12-01T09:00",
            param_hint=option,
        )
    when = when.strip()
    if when.startswith("+"):
        try:
            at = signup + parse_delay(when[1:])
        except ValueError as exc:
            raise click.BadParameter(f"{text!r}: {exc}", param_hint=option) from None
    else:
        try:
            parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: {when!r} is neither +<delay> (e.g. +5d) nor ISO-8601",
                param_hint=option,
            ) from None
        at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)
    return Happening(kind, name.strip().lower() if kind == "tag" else name.strip(), at)


def _simulate_with_triggers(
    library: ContentLibrary,
    seq: Sequence,
    signup: datetime,
    zone: ZoneInfo,
    rotations: int,
    happenings: list[Happening],
    fmt: str,
) -> None:
    """The timeline of NAME cut at its exit, plus every sequence the happenings start."""
    items = [i.id for i in library.items() if not i.transactional]
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    started = start_for(seq, happenings)
    runs: list[tuple[Sequence, datetime, str]] = [
        (seq, started.at if started else signup, f"{started.label()}" if started else "signup")
    ]
    for other in library.sequences():
        if other.name == seq.name:
            continue
        begin = start_for(other, happenings)
        if begin is not None:
            runs.append((other, begin.at, begin.label()))
    for run, start, why in runs:
        pool = rotation_pool(items, run.then.kinds if run.then else ())
        sends = simulate(run, pool, signup=start, zone=zone, rotations=rotations)
        kept, stop = until_exit(sends, run, [h for h in happenings if h.at >= start])
        when = start.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        notes.append(f"{run.name} starts {when} ({why})")
        if stop is not None:
            left = len(sends) - len(kept)
            stamp = stop.at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
            notes.append(f"{run.name} exits {stamp} on {stop.label()}: {left} emails not sent")
        rows += [
            {
                "sequence": run.name,
                "step": "then" if send.step < 0 else send.step + 1,
                "item": send.item_id,
                "local": send.local(zone).strftime("%Y-%m-%d %H:%M %Z"),
                "utc": send.at.strftime("%Y-%m-%dT%H:%MZ"),
                "at": send.at,
            }
            for send in kept
        ]
    rows.sort(key=lambda row: (row["at"], row["sequence"]))
    for number, row in enumerate(rows, 1):
        row["n"] = number
    if fmt == "table":
        local = signup.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        click.echo(f"{seq.name} for a subscriber confirming {local} in {zone}")
        for note in notes:
            click.echo(note)
    emit(rows, ["n", "sequence", "step", "item", "local", "utc"], fmt)


def _zone(name: str) -> ZoneInfo:
    found = find_zone(name)
    if found is None:
        raise click.BadParameter(
            f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Berlin "
            "(`newsletter timezones` lists them)",
            param_hint="--timezone",
        )
    return found


def _signup(text: str | None, zone: ZoneInfo) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not ISO-8601; use e.g. 2026-10-10T14:30 or 2026-10-10T12:30:00+00:00",
            param_hint="--signup",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


@sequence.command("enroll")
@click.argument("name")
@click.argument("emails", nargs=-1, required=True)
def enroll_command(name: str, emails: tuple[str, ...]) -> None:
    """Enroll active subscribers EMAILS in sequence NAME (any enroll mode; someone already
    in it stays where they are unless the sequence says reenroll: true)."""
    from newsletter.automation.use_cases import enroll_emails

    app = get_app()
    with user_errors():
        outcomes = enroll_emails(app, name, emails, now=datetime.now(UTC))
    for outcome in outcomes:
        click.echo(f"{outcome.email}: {outcome.outcome}")


@sequence.command("exit")
@click.argument("name")
@click.argument("emails", nargs=-1, required=True)
def exit_command(name: str, emails: tuple[str, ...]) -> None:
    """End the enrollment of EMAILS in sequence NAME: no further step of it is sent."""
    from newsletter.automation.use_cases import exit_emails

    app = get_app()
    with user_errors():
        outcomes = exit_emails(app, name, emails, now=datetime.now(UTC))
    for outcome in outcomes:
        click.echo(f"{outcome.email}: {outcome.outcome}")


@click.command("retry-unknown")
@click.option(
    "--before", "before_text", help="Only rows whose fate became unknown before this time."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def retry_unknown(before_text: str | None, yes: bool) -> None:
    """Queue deliveries whose outcome is unknown (a crash mid-send) to be sent again.

    Each may reach its recipient twice: only run this when the provider's events did not
    reconcile them (SendGrid events turn most of them into sent) and a missing email is
    worse than a duplicate.
    """
    from newsletter.db import transaction
    from newsletter.ledger import count_by_status, requeue_unknown

    before = parse_now(before_text) if before_text else None
    app = get_app()
    with app.sessions() as session:
        waiting = count_by_status(session).get("unknown", 0)
    if waiting == 0:
        click.echo("no deliveries with an unknown outcome")
        return
    if not yes:
        click.confirm(f"requeue up to {waiting} deliveries with an unknown outcome?", abort=True)
    try:
        with transaction(app.sessions) as session:
            count = requeue_unknown(session, now=datetime.now(UTC), before=before)
    except NewsletterError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"requeued {count} deliveries; the next deliver run sends them")
