"""``newsletter api-key create|list|revoke``: keys for the REST API under ``/api/v1``."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from newsletter.api_keys import create_key, list_keys, revoke_key
from newsletter.cli.support import FORMATS, emit, get_app, user_errors


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at is not None else "-"


@click.group("api-key")
def api_key() -> None:
    """API keys for the REST API (Authorization: Bearer <key>)."""


@api_key.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["read", "write"]),
    default="write",
    show_default=True,
    help="read: GET only; write: also create, change and delete.",
)
def create(name: str, scope: str) -> None:
    """Create key NAME and print it once: only its hash is kept, so copy it now."""
    app = get_app()
    with user_errors():
        view, secret = create_key(app, name, scope=scope, now=datetime.now(UTC))
    click.echo(secret)
    click.echo(
        f"created {view.scope} key {view.name!r}; store it now, it cannot be shown again",
        err=True,
    )


@api_key.command("list")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def list_command(fmt: str) -> None:
    """List keys: name, scope, first characters, created, last used, status."""
    rows = [
        {
            "name": k.name,
            "scope": k.scope,
            "prefix": k.prefix + "...",
            "created": _when(k.created_at),
            "last_used": _when(k.last_used_at),
            "status": k.status,
        }
        for k in list_keys(get_app())
    ]
    emit(rows, ["name", "scope", "prefix", "created", "last_used", "status"], fmt)


@api_key.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke key NAME: requests with it are refused (401) from now on."""
    with user_errors():
        view = revoke_key(get_app(), name, now=datetime.now(UTC))
    click.echo(f"revoked key {view.name!r} ({view.prefix}...)")
