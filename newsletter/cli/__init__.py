"""The ``newsletter`` command line: thin commands over the use cases."""

from __future__ import annotations

import json
import logging

import click

from newsletter import __version__
from newsletter.cli.subscribers import subscribers
from newsletter.cli.support import State, get_app, parse_now, user_errors


@click.group()
@click.version_option(__version__, prog_name="newsletter")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Self-hosted drip-email newsletter: subscribe, confirm, drip, campaigns, stats."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    state = State()
    ctx.obj = state
    ctx.call_on_close(state.close)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--no-scheduler", is_flag=True, help="Serve the web surface only.")
def serve(host: str, port: int, no_scheduler: bool) -> None:
    """Run the web surface and the scheduler (applies pending migrations first)."""
    import uvicorn

    from newsletter.scheduling import start_scheduler
    from newsletter.web.app import create_web_app

    app = get_app()
    scheduler = None if no_scheduler else start_scheduler(app)
    click.echo(
        f"newsletter {__version__} on http://{host}:{port} "
        f"(database {app.engine.url.render_as_string(hide_password=True)}, "
        f"mail {app.settings.mail_backend})"
    )
    try:
        uvicorn.run(create_web_app(app), host=host, port=port, log_level="info")
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)


@main.command()
def worker() -> None:
    """Run the scheduler and delivery without the web surface (run several to scale)."""
    from newsletter.scheduling import run_worker

    run_worker(get_app())


@main.command()
@click.option("--now", "now_text", help="Run as of this ISO-8601 time (simulation, tests).")
@click.option("--job", "only", multiple=True, help="Run only these jobs (repeatable).")
def tick(now_text: str | None, only: tuple[str, ...]) -> None:
    """Run one pass of every scheduled job, then exit."""
    from newsletter.jobs import JOBS

    now = parse_now(now_text)
    app = get_app()
    unknown = [name for name in only if name not in JOBS]
    if unknown:
        raise click.BadParameter(f"unknown job {unknown[0]!r}; known: {', '.join(JOBS)}")
    for name, job in JOBS.items():
        if only and name not in only:
            continue
        with user_errors():
            result = job(app, now)
        click.echo(f"{name}: {json.dumps(result, sort_keys=True)}")


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    from newsletter.db import pending_migrations

    app = get_app()  # migrates on open
    with user_errors():
        left = pending_migrations(app.engine)
    click.echo("database is up to date" if not left else f"pending: {', '.join(left)}")


@main.group()
def delivery() -> None:
    """Inspect and steer the delivery ledger."""


@delivery.command("resume")
def delivery_resume() -> None:
    """Lift a sending halt after the provider credentials were fixed."""
    from newsletter.db import transaction
    from newsletter.sending_halt import clear_halt

    app = get_app()
    with transaction(app.sessions) as session:
        cleared = clear_halt(session)
    click.echo("sending resumed" if cleared else "sending was not halted")


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
    from newsletter.cli.api_key import api_key

    main.add_command(api_key)


_register_optional()
