"""``newsletter sources list|test``: the form sources of ``sources.yaml``, dry-run a payload."""

from __future__ import annotations

import json
from pathlib import Path

import click

from newsletter.cli.content import format_table
from newsletter.cli.support import get_settings
from newsletter.errors import ConfigurationError, ContentError
from newsletter.sources.config import SourceConfig
from newsletter.sources.decide import read_delivery
from newsletter.sources.loading import load_sources, source_secrets
from newsletter.sources.presets import PRESETS
from newsletter.sources.safe_json import BodyError
from newsletter.sources.verify import Inbound


def _sources() -> dict[str, SourceConfig]:
    try:
        return load_sources(get_settings().sources_file)
    except (ConfigurationError, ContentError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def sources() -> None:
    """Form services and shops posting to POST /subscribe/{source} (sources.yaml)."""


@sources.command("list")
def list_sources() -> None:
    """List every source: its route, preset, opt-in, fixed tags and whether its secret is set."""
    found = _sources()
    if not found:
        click.echo("no sources: add them to sources.yaml (see the README)")
        return
    rows: list[tuple[str, ...]] = [("NAME", "ROUTE", "PRESET", "OPT_IN", "TAGS", "SECRET")]
    for name, source in found.items():
        secret = "set" if source_secrets(source) else f"missing: set {source.secret_env}"
        rows.append(
            (
                name,
                f"/subscribe/{name}",
                source.preset,
                source.opt_in,
                ",".join(source.tags),
                secret,
            )
        )
    click.echo(format_table(rows))


@sources.command("test")
@click.argument("name")
@click.argument(
    "payload", metavar="FILE.json", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="A request header the sender sets (e.g. X-Shopify-Topic:customers/create).",
)
def test_source(name: str, payload: Path, headers: tuple[str, ...]) -> None:
    """Show what a sample payload would do (mapped fields, consent decision); writes nothing.

    The signature is not checked: this reads the payload as if it were authentic.
    """
    source = _sources().get(name)
    if source is None:
        raise click.ClickException(
            f"no source {name!r} in the sources file; run `newsletter sources list`"
        )
    parsed_headers: dict[str, str] = {}
    for header in headers:
        key, sep, value = header.partition(":")
        if not sep or not key.strip():
            raise click.BadParameter(f"{header!r} must look like NAME:VALUE", param_hint="--header")
        parsed_headers[key.strip().lower()] = value.strip()
    body = payload.read_bytes()
    fields = None
    if PRESETS[source.preset].body == "form":  # a form sender's sample is its fields as JSON
        try:
            fields = json.loads(body)
        except ValueError as exc:
            raise click.ClickException(f"{payload}: not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise click.ClickException(f"{payload}: must be a JSON object of form fields")
    try:
        verdict = read_delivery(source, Inbound(body, parsed_headers, {}), fields)
    except BodyError as exc:
        raise click.ClickException(f"{payload}: the sender would get 400: {exc}") from None
    click.echo(json.dumps(verdict.as_dict(), indent=2, ensure_ascii=False))
