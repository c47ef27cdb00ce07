"""The ``newsletter`` command line: thin commands over the use cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import make_url

from newsletter import __version__
from newsletter.app import App
from newsletter.cli.subscribers import subscribers
from newsletter.cli.support import (
    OneLineErrors,
    State,
    bind_port,
    get_app,
    get_settings,
    parse_now,
    user_errors,
)
from newsletter.db import database_exists, upgrade
from newsletter.logs import configure_logging

if TYPE_CHECKING:
    from newsletter.jobs import Job


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log everything at debug level (APScheduler and uvicorn included) and say which "
    "database and content folder the command uses.",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Self-hosted drip-email newsletter: subscribe, confirm, drip, campaigns, stats.

    Settings come from NEWSLETTER_* variables and a .env file, read when a command starts
    (restart serve / worker after a change). Errors are one line on stderr: exit code 1
    for a refused action or a bad setting, 2 for a usage error.
    """
    configure_logging(verbose=verbose)
    state = State(verbose=verbose)
    ctx.obj = state
    ctx.call_on_close(state.close)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="No scheduled jobs: the background process sends confirmations only.",
)
def serve(host: str, port: int, no_scheduler: bool) -> None:
    """Run the web surface and the scheduler (applies pending migrations first).

    The scheduler's jobs, the confirmation emails and applying SendGrid's event batches
    run in a background process that serve starts beside the web server and that ends
    with it.
    """
    import uvicorn

    from newsletter.cli.background import BackgroundProcess
    from newsletter.client_ip import UVICORN_PROXY_HEADERS
    from newsletter.scheduling import build_scheduler
    from newsletter.web.app import create_web_app

    app = get_app(create=True)
    with user_errors():
        sock = bind_port(host, port)
        if not no_scheduler:
            build_scheduler(app)  # the cron file is checked here; the jobs run in the child
    click.echo(
        f"newsletter {__version__} on http://{host}:{port} "
        f"(database {app.engine.url.render_as_string(hide_password=True)}, "
        f"content {app.settings.content_dir}, mail {app.settings.mail_backend})"
    )
    state = click.get_current_context().find_object(State)
    verbose = state is not None and state.verbose
    level = "info" if verbose else "warning"
    # The scheduler's jobs, the confirmations and the event drain run in a process of
    # their own, so this one only answers requests and writes (newsletter/cli/background.py).
    background = BackgroundProcess.start(scheduler=not no_scheduler, verbose=verbose)
    config = uvicorn.Config(
        create_web_app(
            app,
            wake_sender=background.wake,
            wake_events=background,
            background_problem=background.problem,
        ),
        log_level=level,
        log_config=None,
        proxy_headers=UVICORN_PROXY_HEADERS,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        background.close()


@main.command()
def worker() -> None:
    """Run the scheduler and delivery without the web surface (run several to scale)."""
    from newsletter.scheduling import run_worker

    app = get_app(create=True)
    click.echo(
        f"newsletter {__version__} worker (database "
        f"{app.engine.url.render_as_string(hide_password=True)}, content "
        f"{app.settings.content_dir}, mail {app.settings.mail_backend})"
    )
    with user_errors():
        run_worker(app)


@main.command()
@click.option(
    "--now",
    "now_text",
    help="Run as of this ISO-8601 time. It acts for real: emails due by then are planned "
    "and SENT now. Combine with --dry-run to only look.",
)
@click.option("--job", "only", multiple=True, help="Run only these jobs (repeatable).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be planned and sent; nothing is written and no email is sent.",
)
def tick(now_text: str | None, only: tuple[str, ...], dry_run: bool) -> None:
    """Run one pass of every scheduled job, then exit.

    Plans due drip steps and campaigns and delivers what is due. Without --dry-run this
    sends real email, also with --now in the future.
    """
    from newsletter.jobs import JOBS

    now = parse_now(now_text)
    unknown = [name for name in only if name not in JOBS]
    if unknown:
        raise click.BadParameter(
            f"unknown job {unknown[0]!r}; known: {', '.join(JOBS)}", param_hint="--job"
        )
    app = get_app()
    jobs = {name: job for name, job in JOBS.items() if not only or name in only}
    if dry_run:
        _dry_run(app, jobs, now)
        return
    for name, job in jobs.items():
        with user_errors():
            result = job(app, now)
        click.echo(f"{name}: {json.dumps(result, sort_keys=True)}")


def _dry_run(app: App, jobs: dict[str, Job], now: datetime) -> None:
    from newsletter.dry_run import dry_run

    click.echo(
        f"dry run as of {now.isoformat(timespec='seconds')}: nothing is written, no email is sent"
    )
    with user_errors():
        report = dry_run(app, jobs, now=now)
    for name, result in report.results.items():
        click.echo(f"{name}: {json.dumps(result, sort_keys=True)}")
    if not report.emails:
        click.echo("would send no email")
        return
    noun = "email" if len(report.emails) == 1 else "emails"
    click.echo(f"would send {len(report.emails)} {noun}:")
    for kind, item, count in report.by_item():
        click.echo(f"  {count:>6}  {kind:<12} {item}")


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the database or apply pending migrations, and say what was applied."""
    settings = get_settings(create=True)
    state = click.get_current_context().find_object(State)
    assert state is not None
    with user_errors():
        existed = database_exists(settings.effective_database_url)
        app = App(settings)
        try:
            applied = upgrade(app.engine)
        finally:
            app.close()
    url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    if not applied:
        click.echo(f"{url} is up to date")
        return
    verb = "upgraded" if existed else "created"
    noun = "migration" if len(applied) == 1 else "migrations"
    click.echo(f"{verb} {url}: applied {len(applied)} {noun}")
    for migration in applied:
        click.echo(f"  {migration.revision}  {migration.title}")


@main.group()
def delivery() -> None:
    """Inspect and steer the delivery ledger."""


@delivery.command("resume")
def delivery_resume() -> None:
    """Lift a sending halt (after the provider credentials were fixed) and any provider
    backoff (a 429/5xx wait), so the next tick sends again."""
    from newsletter.db import transaction
    from newsletter.send_backoff import clear_backoff
    from newsletter.sending_halt import clear_halt

    app = get_app()
    with transaction(app.sessions) as session:
        cleared = clear_halt(session)
        backoff = clear_backoff(session)
    click.echo("sending resumed" if cleared else "sending was not halted")
    if backoff is not None and backoff[0] > datetime.now(UTC):
        until, reason = backoff
        click.echo(f"provider backoff until {until.isoformat()} cleared ({reason or 'no reason'})")


def _register_optional() -> None:
    """Commands owned by other modules."""
    from newsletter.cli.content import content, preview

    main.add_command(subscribers)
    main.add_command(content)
    main.add_command(preview)
    from newsletter.cli.campaign import campaign

    main.add_command(campaign)
    from newsletter.cli.sequence import retry_unknown, sequence

    main.add_command(sequence)
    delivery.add_command(retry_unknown)
    from newsletter.cli.stats import stats

    main.add_command(stats)
    from newsletter.cli.events import events

    main.add_command(events)
    from newsletter.cli.webhook import webhook

    main.add_command(webhook)
    from newsletter.cli.zones import timezones

    main.add_command(timezones)
    from newsletter.cli.sources import sources

    main.add_command(sources)
    import newsletter.cli.attention  # noqa: F401 - adds `subscribers plan` and `timeline`
    from newsletter.cli.api_key import api_key

    main.add_command(api_key)


_register_optional()
