"""What every CLI command shares: the lazily opened ``App``, error translation, output."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from newsletter.app import App
from newsletter.errors import NewsletterError
from newsletter.settings import load_settings


class State:
    """``ctx.obj``: opens the app on first use and closes it when the command ends."""

    def __init__(self) -> None:
        self._app: App | None = None

    def app(self) -> App:
        if self._app is None:
            try:
                self._app = App(load_settings())
                self._app.migrate()
            except NewsletterError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def get_app(ctx: click.Context | None = None) -> App:
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(State)
    if state is None:
        state = State()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state.app()


@contextmanager
def user_errors() -> Iterator[None]:
    """Translate our errors into one line on stderr and exit code 1."""
    try:
        yield
    except NewsletterError as exc:
        raise click.ClickException(str(exc)) from exc


def parse_now(value: str | None) -> datetime:
    """``--now`` as an aware UTC datetime (naive input is taken as UTC)."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO-8601; use e.g. 2026-12-01T09:00:00+00:00"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


FORMATS = click.Choice(["table", "json", "csv"])


def emit(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    *,
    title: str | Callable[[int], str] = "",
) -> None:
    """Print rows as a rich table for people, or JSON / CSV for scripts.

    JSON and CSV are written row by row, so a list of any size streams through in
    constant memory; ``title`` may be a function of the row count (tables only).
    """
    if fmt == "json":
        click.echo("[", nl=False)
        for index, row in enumerate(rows):
            prefix = "" if index == 0 else ", "
            item = json.dumps({c: row.get(c) for c in columns}, default=str)
            click.echo(prefix + item, nl=False)
        click.echo("]")
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})
            click.echo(buffer.getvalue(), nl=False)
            buffer.seek(0)
            buffer.truncate()
        click.echo(buffer.getvalue(), nl=False)
        return
    table = Table()
    for column in columns:
        table.add_column(column, no_wrap=True)
    count = 0
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
        count += 1
    table.title = (title(count) if callable(title) else title) or None
    # A terminal gets its own width; a pipe or a test gets whole rows, never wrapped cells.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 400
    Console(width=width, soft_wrap=False).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)
