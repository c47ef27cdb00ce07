"""``newsletter content list|check`` and ``newsletter preview``: thin commands over the library."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from newsletter.cli.support import get_settings, require_database
from newsletter.content.library import SAMPLE_SUBSCRIBER, ContentLibrary, load_library
from newsletter.content.model import ContentItem, SubscriberContext
from newsletter.content.templates import template_names
from newsletter.cronfile import load_cron_file, missing_jobs
from newsletter.errors import ContentError, NewsletterError
from newsletter.settings import Settings
from newsletter.sources.loading import read_sources


def _settings() -> Settings:
    return get_settings()


def _library(settings: Settings, *, strict: bool = True) -> ContentLibrary:
    try:
        return load_library(settings, strict=strict)
    except ContentError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def content() -> None:
    """List and check the content library (content/ and templates/emails/)."""


@content.command("list")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def list_items(fmt: str) -> None:
    """List every content item: id, kind, subject and template."""
    items = _library(_settings()).items()
    if fmt == "json":
        click.echo(json.dumps([_as_json(item) for item in items], indent=2, ensure_ascii=False))
        return
    rows: list[tuple[str, ...]] = [("ID", "KIND", "SUBJECT", "TEMPLATE")]
    rows += [(item.id, item.kind, item.subject, item.template) for item in items]
    click.echo(format_table(rows))


def topic_problems(settings: Settings, library: ContentLibrary) -> list[ContentError]:
    """``content/topics.yaml`` (optional) and the ``topic:`` each item names."""
    from newsletter.attention.policy import load_topics

    try:
        load_topics(
            settings.content_dir,
            sequences=[s.name for s in library.sequences()],
            item_topics=[(i.id, i.topic) for i in library.items() if i.topic],
        )
    except ContentError as exc:
        return [exc]
    return []


@content.command("check")
@click.option(
    "--strict", is_flag=True, help="Fail on warnings too (e.g. example content still shipped)."
)
def check(strict: bool) -> None:
    """Check every content file, sequence, template and cron.yaml; render every item.

    Prints one line per problem as file:line: message and exits 1 if there is any.
    Warnings (example content, which is never sent to subscribers) are listed too and
    fail the check only with --strict.
    """
    settings = _settings()
    library = _library(settings, strict=False)
    problems = library.check()
    jobs = 0
    try:
        cron_jobs = load_cron_file(settings.cron_file)
        jobs = len(cron_jobs)
        problems += [
            ContentError(
                f"job {name!r} is not scheduled, so the scheduler never runs it; add it",
                str(settings.cron_file),
            )
            for name in missing_jobs(cron_jobs)
        ]
    except ContentError as exc:
        problems.append(exc)
    found_sources, source_problems = read_sources(settings.sources_file)
    problems += source_problems
    problems += topic_problems(settings, library)
    for problem in problems:
        click.echo(str(problem))
    warnings = example_warnings(library.items())
    for warning in warnings:
        click.echo(warning)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise click.ClickException(f"{len(problems)} {noun} found; fix them and run again")
    if strict and warnings:
        noun = "warning" if len(warnings) == 1 else "warnings"
        raise click.ClickException(
            f"{len(warnings)} {noun} with --strict; replace the example content and remove "
            "'example: true', then run again"
        )
    click.echo(
        f"OK: {_count(library.items(), 'item')}, {_count(library.sequences(), 'sequence')}, "
        f"{_count(template_names(settings.templates_dir), 'template')} and "
        f"{jobs} cron {'job' if jobs == 1 else 'jobs'} checked"
        + (f", and {_count(list(found_sources), 'form source')}" if found_sources else "")
        + "; every item renders"
    )


@click.command()
@click.argument("item_id", metavar="ITEM")
@click.option("--subscriber", "email", help="Render as this subscriber (default: a sample).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML part here (default: var/preview/<kind>-<slug>.html).",
)
@click.option("--text", is_flag=True, help="Print the plain-text part instead of writing HTML.")
def preview(item_id: str, email: str | None, output: Path | None, text: bool) -> None:
    """Render ITEM (e.g. tips/meet-your-ql) as it will be sent."""
    settings = _settings()
    library = _library(settings)
    subscriber = _subscriber(settings, email)
    try:
        rendered = library.render(_item_id(item_id), subscriber, library.sample_links())
    except ContentError as exc:
        raise click.ClickException(str(exc)) from None
    if text and output is None:
        click.echo(f"Subject: {rendered.subject}\nPreheader: {rendered.preheader}\n")
        click.echo(rendered.text, nl=False)
        return
    item = library.item(rendered.item_id)
    path = output or settings.var_dir / "preview" / f"{item.kind}-{item.slug}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered.html, encoding="utf-8")
    if text:
        click.echo(rendered.text, nl=False)
    click.echo(str(path))


def example_warnings(items: Sequence[ContentItem]) -> list[str]:
    """One line per item marked ``example: true`` (never sent to real subscribers)."""
    return [
        f"{item.path}: warning: {item.id} is example content (example: true): the drip and "
        "campaigns skip it, so subscribers never get it; replace it with your own and "
        "remove the flag"
        for item in items
        if item.example
    ]


def _count(things: Sequence[object], noun: str) -> str:
    return f"{len(things)} {noun}{'' if len(things) == 1 else 's'}"


def _subscriber(settings: Settings, email: str | None) -> SubscriberContext:
    if email is None:
        return SubscriberContext(
            email=SAMPLE_SUBSCRIBER.email,
            first_name=SAMPLE_SUBSCRIBER.first_name,
            timezone=settings.default_timezone,
        )
    from newsletter.subscribers import subscriber_context  # the database, only when asked

    try:
        require_database(settings)  # read-only: never creates one
        return subscriber_context(settings, email)
    except NewsletterError as exc:
        raise click.ClickException(str(exc)) from None


def _item_id(raw: str) -> str:
    """Accept ``tips/x``, ``tips/x.md`` and ``content/tips/x.md``."""
    parts = raw.removesuffix(".md").strip("/").split("/")
    return "/".join(parts[-2:])


def _as_json(item: ContentItem) -> dict[str, object]:
    return {
        "id": item.id,
        "kind": item.kind,
        "subject": item.subject,
        "template": item.template,
        "preheader": item.preheader,
        "tags": list(item.tags),
        "medical": item.medical,
        "transactional": item.transactional,
        "example": item.example,
        "path": item.path,
    }


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, no trailing spaces."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    return "\n".join(line.rstrip() for line in lines)
