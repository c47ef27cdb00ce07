"""``newsletter campaign ...``: one-off campaigns to a segment, from draft to sent."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import click

from newsletter.attention.priority import NORMAL, priority_name
from newsletter.campaigns.schedule import progress_bar
from newsletter.campaigns.views import CampaignView
from newsletter.cli.support import emit, get_app, parse_now, user_errors
from newsletter.models import CampaignState

NOW_OPTION = click.option("--now", "now_text", hidden=True)
STATUSES = ("queued", "leased", "sending", "sent", "failed", "unknown", "skipped")
LIST_COLUMNS = ("name", "state", "audience", "schedule", "sent", "queued", "failed")


@click.group()
def campaign() -> None:
    """One-off campaigns: create a draft, test it, schedule or send it, steer it."""


@campaign.command("create")
@click.argument("item")
@click.option("--name", help="Campaign name (default: the item's slug).")
@click.option("--tag", "tags", multiple=True, help="Only subscribers with ANY of these tags.")
@click.option("--exclude-tag", "exclude", multiple=True, help="Leave out subscribers with it.")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only subscribers whose custom field NAME is VALUE (repeatable: all must hold).",
)
@click.option("--pause-drips", is_flag=True, help="Hold drip steps while this campaign sends.")
@click.option(
    "--yes", is_flag=True, help="Do not ask when ITEM was already sent to the same segment."
)
@click.option(
    "--priority",
    type=click.Choice(["high", "normal", "low"]),
    default="normal",
    show_default=True,
    help="Who wins a slot of the marketing cap (NEWSLETTER_MARKETING_CAP).",
)
@click.option("--topic", help="Topic of content/topics.yaml (default: the item's topic).")
@NOW_OPTION
def create(
    item: str,
    name: str | None,
    tags: tuple[str, ...],
    exclude: tuple[str, ...],
    where: tuple[str, ...],
    pause_drips: bool,
    yes: bool,
    priority: str,
    topic: str | None,
    now_text: str | None,
) -> None:
    """Make a draft campaign of ITEM for a segment of active subscribers.

    When a started campaign already sent ITEM to the same segment, it warns and asks
    first (--yes for scripts): the new campaign would send it to them again.
    """
    from newsletter.campaigns.drafts import create_campaign, earlier_sends

    app = get_app()
    with user_errors():
        earlier = earlier_sends(app, item, include=tags, exclude=exclude)
    if earlier:
        names = ", ".join(repr(n) for n in earlier)
        click.echo(
            f"warning: {item.strip()} was already sent to this segment by campaign {names}; "
            "a new campaign sends it to them again",
            err=True,
        )
        if not yes:
            click.confirm("Create another campaign of it?", abort=True)
    with user_errors():
        view = create_campaign(
            app,
            item,
            name=name,
            include=tags,
            exclude=exclude,
            where=where,
            pause_drips=pause_drips,
            now=parse_now(now_text),
            priority=priority,
            topic=topic,
        )
    click.echo(
        f"created draft {view.name!r}: {view.item_id} to {view.audience:,} active "
        f"subscribers ({view.segment.describe()})"
    )
    click.echo(
        f"next: newsletter campaign test {view.name} --to YOU@EXAMPLE.COM, then "
        f"newsletter campaign schedule {view.name} --at 'YYYY-MM-DD HH:MM'"
    )


@campaign.command("edit")
@click.argument("name")
@click.option("--item", help="Send this content item instead.")
@click.option("--tag", "tags", multiple=True, help="Replace the include tags.")
@click.option("--exclude-tag", "exclude", multiple=True, help="Replace the exclude tags.")
@click.option("--all-subscribers", is_flag=True, help="Drop every tag rule.")
@click.option("--pause-drips/--no-pause-drips", default=None, help="Hold drips while it sends.")
@NOW_OPTION
def edit(
    name: str,
    item: str | None,
    tags: tuple[str, ...],
    exclude: tuple[str, ...],
    all_subscribers: bool,
    pause_drips: bool | None,
    now_text: str | None,
) -> None:
    """Change a draft or scheduled campaign."""
    from newsletter.campaigns.drafts import edit_campaign

    include: tuple[str, ...] | None = tags or None
    excluded: tuple[str, ...] | None = exclude or None
    if all_subscribers:
        include, excluded = (), ()
    app = get_app()
    with user_errors():
        view = edit_campaign(
            app,
            name,
            item_id=item,
            include=include,
            exclude=excluded,
            pause_drips=pause_drips,
            now=parse_now(now_text),
        )
    click.echo(
        f"updated {view.state} {view.name!r}: {view.item_id} to {view.audience:,} active "
        f"subscribers ({view.segment.describe()})"
    )


@campaign.command("delete")
@click.argument("name")
def delete(name: str) -> None:
    """Delete a campaign that has not started."""
    from newsletter.campaigns.drafts import delete_campaign

    with user_errors():
        delete_campaign(get_app(), name)
    click.echo(f"deleted {name!r}")


@campaign.command("schedule")
@click.argument("name")
@click.option("--at", "at", required=True, help="'2026-12-01 09:00' or ISO-8601.")
@click.option("--timezone", help="Zone of --at (default: NEWSLETTER_DEFAULT_TIMEZONE).")
@click.option("--local-time", is_flag=True, help="Send at --at in each subscriber's own zone.")
@NOW_OPTION
def schedule(
    name: str, at: str, timezone: str | None, local_time: bool, now_text: str | None
) -> None:
    """Schedule a campaign; the planner starts it at that time."""
    from newsletter.campaigns.sending import schedule_campaign

    if local_time and timezone:
        raise click.UsageError("use either --timezone or --local-time, not both")
    app = get_app()
    with user_errors():
        view = schedule_campaign(
            app, name, at=at, timezone=timezone, local_time=local_time, now=parse_now(now_text)
        )
    assert view.scheduled_at is not None
    click.echo(f"scheduled {view.name!r} for {schedule_text(view)}")
    first = "starts" if not view.local_time else "first zone starts"
    click.echo(
        f"{first} {view.scheduled_at.isoformat(timespec='minutes')}; audience now "
        f"{view.audience:,} (frozen when it starts)"
    )


@campaign.command("send")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@NOW_OPTION
def send(name: str, yes: bool, now_text: str | None) -> None:
    """Start a campaign now (after a confirmation prompt)."""
    from newsletter.campaigns.sending import send_campaign_now
    from newsletter.campaigns.views import show_campaign

    app = get_app()
    with user_errors():
        view = show_campaign(app, name)
    if not yes:
        click.confirm(
            f"Send {view.name!r} ({view.item_id}) to {view.audience:,} subscribers now?",
            abort=True,
        )
    with user_errors():
        view = send_campaign_now(app, name, now=parse_now(now_text))
    click.echo(
        f"sending {view.name!r}: {view.audience:,} emails queued; the deliver job sends them "
        "(newsletter serve / worker, or newsletter tick)"
    )


@campaign.command("test")
@click.argument("name")
@click.option("--to", "recipients", multiple=True, required=True, help="Seed address (repeat).")
@NOW_OPTION
def test(name: str, recipients: tuple[str, ...], now_text: str | None) -> None:
    """Send the campaign now to seed addresses only, rendered for a sample subscriber."""
    from newsletter.campaigns.sending import send_test

    with user_errors():
        outcomes = send_test(get_app(), name, recipients, now=parse_now(now_text))
    for outcome in outcomes:
        detail = f" ({outcome.error})" if outcome.error and outcome.status != "sent" else ""
        click.echo(f"{outcome.email}: {outcome.status}{detail}")
    if any(o.status != "sent" for o in outcomes):
        raise click.ClickException("some test emails were not sent; see the lines above")


@campaign.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def list_(fmt: str) -> None:
    """Every campaign with its state, schedule and progress."""
    from newsletter.campaigns.views import list_campaigns

    views = list_campaigns(get_app())
    if fmt == "json":
        click.echo(json.dumps([as_dict(v) for v in views]))
        return
    rows = [
        {
            "name": v.name,
            "state": v.state,
            "audience": v.audience,
            "schedule": schedule_text(v),
            "sent": v.counts.get("sent", 0),
            "queued": v.counts.get("queued", 0),
            "failed": v.counts.get("failed", 0),
        }
        for v in views
    ]
    emit(rows, LIST_COLUMNS, fmt, title=f"{len(rows)} campaigns")


@campaign.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def show(name: str, fmt: str) -> None:
    """One campaign: state, schedule, audience, delivery counts and progress."""
    from newsletter.campaigns.views import show_campaign

    app = get_app()
    with user_errors():
        view = show_campaign(app, name)
    stats = _stats(app, name)
    if fmt == "json":
        click.echo(json.dumps({**as_dict(view), "stats": stats}))
        return
    for line in show_lines(view, stats):
        click.echo(line)


STEER_HELP = {
    "pause": "Stop sending a campaign for now (takes effect within one claim batch).",
    "resume": "Continue a paused campaign, or start a stale one now.",
    "cancel": "Stop a campaign for good; what was sent stays recorded.",
}


def _steer(verb: str) -> Any:
    @campaign.command(verb, help=STEER_HELP[verb])
    @click.argument("name")
    @NOW_OPTION
    def command(name: str, now_text: str | None) -> None:
        from newsletter.campaigns import steering

        action = getattr(steering, f"{verb}_campaign")
        with user_errors():
            view = action(get_app(), name, now=parse_now(now_text))
        click.echo(f"{view.name!r} is {view.state}: {_counts_text(view)}")

    return command


for _verb in ("pause", "resume", "cancel"):
    _steer(_verb)


# ---- formatting ----------------------------------------------------------------------


def schedule_text(view: CampaignView) -> str:
    """The schedule in the marketer's zone (or the wall time for ``--local-time``)."""
    if view.scheduled_at is None:
        return "-"
    if view.local_time:
        return f"{view.local_time} in each subscriber's time zone"
    local = view.scheduled_at.astimezone(ZoneInfo(view.timezone))
    return f"{local:%Y-%m-%d %H:%M} {view.timezone}"


def _counts_text(view: CampaignView) -> str:
    return ", ".join(
        f"{s} {view.counts.get(s, 0):,}"
        for s in STATUSES
        if s not in ("leased", "sending") or view.counts.get(s)
    )


def show_lines(view: CampaignView, stats: dict[str, Any]) -> list[str]:
    audience = f"{view.audience:,}"
    if view.state in (CampaignState.DRAFT.value, CampaignState.SCHEDULED.value):
        audience += " active subscribers now (frozen when it starts)"
    elif not view.audience_frozen and view.state != CampaignState.CANCELLED.value:
        audience += " so far (freezing the audience)"
    lines = [
        f"campaign:  {view.name} ({view.state})",
        f"item:      {view.item_id}",
        f"segment:   {view.segment.describe()}",
        f"schedule:  {schedule_text(view)}",
        f"audience:  {audience}",
        "drips:     " + ("held while it sends" if view.pause_drips else "continue while it sends"),
        f"counts:    {_counts_text(view)}",
    ]
    lines += attention_lines(view)
    if view.state in (CampaignState.SENDING.value, CampaignState.PAUSED.value):
        lines.append(f"progress:  {progress_bar(view.done, max(view.total, view.audience))}")
    zone = ZoneInfo(view.timezone)
    for label, at in (("started", view.started_at), ("finished", view.finished_at)):
        if at is not None:
            lines.append(f"{label + ':':<10} {at.astimezone(zone):%Y-%m-%d %H:%M} {view.timezone}")
    if view.started_at is not None:
        lines.append(
            "events:    "
            + ", ".join(
                f"{label} {stats.get(key, 0):,}"
                for key, label in (
                    ("delivered", "delivered"),
                    ("opens", "opens"),
                    ("clicks", "clicks"),
                    ("bounces", "bounces"),
                    ("spam_reports", "spam reports"),
                    ("unsubscribes", "unsubscribes"),
                )
            )
        )
    return lines


def as_dict(view: CampaignView) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "name": view.name,
        "state": view.state,
        "item": view.item_id,
        "include_tags": list(view.segment.include),
        "exclude_tags": list(view.segment.exclude),
        "where": dict(view.segment.where),
        "pause_drips": view.pause_drips,
        "scheduled_at": iso(view.scheduled_at),
        "local_time": view.local_time,
        "timezone": view.timezone,
        "schedule": schedule_text(view),
        "audience": view.audience,
        "audience_frozen": view.audience_frozen,
        "counts": {s: view.counts.get(s, 0) for s in STATUSES},
        "created_at": iso(view.created_at),
        "started_at": iso(view.started_at),
        "finished_at": iso(view.finished_at),
        "priority": priority_name(view.priority),
        "topic": view.topic,
        "attention": dict(view.attention),
    }


def attention_lines(view: CampaignView) -> list[str]:
    """Priority and topic when not the defaults; the marketing cap's effect when any."""
    lines = []
    if view.priority != NORMAL or view.topic:
        topic = f", topic {view.topic}" if view.topic else ""
        lines.append(f"priority:  {priority_name(view.priority)}{topic}")
    if any(view.attention.values()):
        lines.append(
            "cap:       "
            f"deferred {view.attention.get('deferred', 0):,} (still queued), "
            f"skipped as stale {view.attention.get('stale', 0):,}, "
            f"opted out {view.attention.get('opted_out', 0):,}"
        )
    return lines


def _stats(app: Any, name: str) -> dict[str, Any]:
    from newsletter.campaigns.views import provider_stats

    with user_errors():
        return provider_stats(app, name)
