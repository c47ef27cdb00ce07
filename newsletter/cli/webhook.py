"""``newsletter webhook ...``: outgoing webhooks - endpoints, their deliveries, secrets."""

from __future__ import annotations

from typing import Any

import click

from newsletter.cli.support import FORMATS, emit, get_app, parse_now, user_errors
from newsletter.webhooks.catalog import EVENT_TYPES
from newsletter.webhooks.service import DeliveryView, NewSecret, WebhookView

NOW_OPTION = click.option("--now", "now_text", hidden=True)
LIST_COLUMNS = ("id", "state", "url", "events", "pending", "failed", "description")
DELIVERY_COLUMNS = (
    "id",
    "webhook",
    "event",
    "type",
    "status",
    "attempts",
    "last",
    "next_attempt_at",
    "created_at",
)


@click.group()
def webhook() -> None:
    """Outgoing webhooks: signed events sent to the shop's own URLs."""


@webhook.command("add")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    help=f"Event type to send (repeatable; '*' for all): {', '.join(EVENT_TYPES)}.",
)
@click.option("--description", help="A note for `webhook list`.")
@NOW_OPTION
def add(url: str, events: tuple[str, ...], description: str | None, now_text: str | None) -> None:
    """Send events to URL; prints its signing secret once."""
    from newsletter.webhooks.service import add_webhook

    with user_errors():
        created = add_webhook(
            get_app(), url, list(events), description=description, now=parse_now(now_text)
        )
    click.echo(f"webhook {created.webhook.id} added: {created.webhook.url}")
    click.echo(f"events: {', '.join(created.webhook.events)}")
    _print_secret(created)


def _print_secret(created: NewSecret) -> None:
    click.echo(f"secret: {created.secret}")
    click.echo(
        "keep it now: it is not shown again. Receivers check the Newsletter-Signature "
        "header with it (see README, Webhooks)."
    )


@webhook.command("list")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@NOW_OPTION
def list_(fmt: str, now_text: str | None) -> None:
    """Endpoints with their state (disabled ones say why), pending and failed counts."""
    from newsletter.webhooks.service import list_webhooks

    views = list_webhooks(get_app(), now=parse_now(now_text))
    emit([_row(v) for v in views], LIST_COLUMNS, fmt, title=lambda n: f"{n} webhooks")
    for view in views:
        if not view.enabled and fmt == "table":
            click.echo(f"webhook {view.id} is disabled: {view.disabled_reason}")


def _row(view: WebhookView) -> dict[str, Any]:
    state = view.state
    if view.previous_secret_valid_until is not None:
        state += " (rotating)"
    return {
        "id": view.id,
        "state": state,
        "url": view.url,
        "events": list(view.events),
        "pending": view.pending,
        "failed": view.failed,
        "description": view.description,
    }


@webhook.command("remove")
@click.argument("webhook_id", metavar="ID", type=int)
@NOW_OPTION
def remove(webhook_id: int, now_text: str | None) -> None:
    """Delete an endpoint and its deliveries."""
    from newsletter.webhooks.service import remove_webhook

    with user_errors():
        view = remove_webhook(get_app(), webhook_id, now=parse_now(now_text))
    click.echo(f"webhook {view.id} removed ({view.url}); {view.pending} pending events dropped")


@webhook.command("enable")
@click.argument("webhook_id", metavar="ID", type=int)
@NOW_OPTION
def enable(webhook_id: int, now_text: str | None) -> None:
    """Enable a disabled endpoint; its waiting events go out, oldest first."""
    from newsletter.webhooks.service import enable_webhook

    with user_errors():
        view = enable_webhook(get_app(), webhook_id, now=parse_now(now_text))
    click.echo(f"webhook {view.id} enabled; {view.pending} pending events will be sent")


@webhook.command("test")
@click.argument("webhook_id", metavar="ID", type=int)
@NOW_OPTION
def test(webhook_id: int, now_text: str | None) -> None:
    """Send a `ping` event to the endpoint now and show its answer."""
    from newsletter.webhooks.service import ping_webhook

    with user_errors():
        result = ping_webhook(get_app(), webhook_id, now=parse_now(now_text))
    delivery = result.delivery
    if not result.ok:
        raise click.ClickException(
            f"ping {delivery.event_id} to webhook {webhook_id} failed: {delivery.last_error}"
        )
    click.echo(
        f"ping {delivery.event_id} delivered to webhook {webhook_id}: "
        f"HTTP {delivery.last_status_code}"
    )


@webhook.command("deliveries")
@click.argument("webhook_id", metavar="[ID]", type=int, required=False)
@click.option(
    "--status",
    type=click.Choice(["pending", "delivered", "failed"]),
    help="Only deliveries in this state.",
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def deliveries(webhook_id: int | None, status: str | None, limit: int, fmt: str) -> None:
    """Recent deliveries (of one endpoint with ID), newest first."""
    from newsletter.webhooks.service import list_deliveries

    with user_errors():
        rows = list_deliveries(get_app(), webhook_id, status=status, limit=limit)
    emit([_delivery_row(d) for d in rows], DELIVERY_COLUMNS, fmt, title=lambda n: f"{n} shown")


def _delivery_row(d: DeliveryView) -> dict[str, Any]:
    last = "" if d.last_status_code is None else f"HTTP {d.last_status_code}"
    if d.last_error and d.last_status_code is None:
        last = d.last_error
    return {
        "id": d.id,
        "webhook": d.webhook_id,
        "event": d.event_id,
        "type": d.type,
        "status": d.status,
        "attempts": d.attempts,
        "last": last,
        "next_attempt_at": d.next_attempt_at,
        "created_at": d.created_at,
    }


@webhook.command("retry")
@click.argument("delivery_id", metavar="DELIVERY", type=int)
@NOW_OPTION
def retry(delivery_id: int, now_text: str | None) -> None:
    """Send a failed delivery again (same event id), next in its endpoint's queue."""
    from newsletter.webhooks.service import retry_delivery

    with user_errors():
        view = retry_delivery(get_app(), delivery_id, now=parse_now(now_text))
    click.echo(
        f"delivery {view.id} ({view.type} {view.event_id}) queued again for webhook "
        f"{view.webhook_id}"
    )


@webhook.command("rotate-secret")
@click.argument("webhook_id", metavar="ID", type=int)
@NOW_OPTION
def rotate_secret(webhook_id: int, now_text: str | None) -> None:
    """New signing secret; the old one also signs for 24 hours (both are sent)."""
    from newsletter.webhooks.service import rotate_secret as rotate

    with user_errors():
        created = rotate(get_app(), webhook_id, now=parse_now(now_text))
    until = created.webhook.previous_secret_valid_until
    assert until is not None
    click.echo(
        f"webhook {created.webhook.id}: new secret; the old one stays valid until "
        f"{until.isoformat(timespec='seconds')}"
    )
    _print_secret(created)
