"""``newsletter timezones``: the IANA zone names accepted by --timezone and imports."""

from __future__ import annotations

import zoneinfo

import click


@click.command("timezones")
@click.argument("search", required=False)
def timezones(search: str | None) -> None:
    """List the IANA time zone names (optionally only those containing SEARCH)."""
    needle = (search or "").lower()
    names = sorted(n for n in zoneinfo.available_timezones() if needle in n.lower())
    if not names:
        raise click.ClickException(
            f"no time zone name contains {search!r}; try a city or region, e.g. Berlin"
        )
    for name in names:
        click.echo(name)
