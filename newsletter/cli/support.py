"""What every CLI command shares: the lazily opened ``App``, error translation, output."""

from __future__ import annotations

import csv
import errno
import io
import json
import shutil
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from newsletter.app import App
from newsletter.db import DatabaseError, database_exists
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.logs import configure_logging
from newsletter.settings import (
    PREFIX,
    Settings,
    keep_secret_key,
    read_secret_key,
    read_settings,
)
from newsletter.startup import check_files


class State:
    """``ctx.obj``: reads the settings and opens the app on first use, closes it at the end.

    Every command goes through ``settings()``: values validated, files checked (a missing
    content folder means "not in a project": nothing is created), a kept secret key read,
    and one line on stderr saying which database and content folder the command uses.
    Only commands that pass ``create=True`` (serve, worker, db upgrade) create a database
    or a secret key; the others refuse, naming the way out.
    """

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose
        self._settings: Settings | None = None
        self._app: App | None = None

    def settings(self, *, create: bool = False) -> Settings:
        if self._settings is None:
            with user_errors():
                settings = read_settings()
                configure_logging(verbose=self.verbose, fmt=settings.log_format)
                check_files(settings)
                self._settings = read_secret_key(settings)
            click.echo(context_line(self._settings), err=True)
        if create and not self._settings.secret_keys:
            with user_errors():
                self._settings = keep_secret_key(self._settings)
        return self._settings

    def app(self, *, create: bool = False) -> App:
        if self._app is None:
            settings = self.settings(create=create)
            with user_errors():
                if not create:
                    require_database(settings)
                    require_secret_key(settings)
                app = App(settings)
                try:
                    app.migrate()
                except NewsletterError:
                    app.close()
                    raise
                self._app = app
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def context_line(settings: Settings) -> str:
    """``using database ..., content ...``: what a command works on (password masked)."""
    url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    return f"using database {url}, content {settings.content_dir.absolute()}"


def require_secret_key(settings: Settings) -> None:
    """Refuse a database command with no secret key (none set, none kept in var/)."""
    if not settings.secret_keys:
        raise ConfigurationError(
            PREFIX + "SECRET_KEY",
            f"not set, and no key is kept in {str(settings.var_dir / 'secret_key')!r}; set it "
            "to the key your server uses, or run `newsletter db upgrade` once to keep one",
        )


def require_database(settings: Settings) -> None:
    """Refuse to run on a database that does not exist yet (commands that only read)."""
    url = settings.effective_database_url
    if database_exists(url):
        return
    shown = make_url(url).render_as_string(hide_password=True)
    raise DatabaseError(
        f"no newsletter database at {shown}; create it with `newsletter db upgrade` (or "
        "`newsletter serve`), or set NEWSLETTER_DATABASE_URL to the one you use"
    )


def _state(ctx: click.Context | None = None) -> State:
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(State)
    if state is None:
        state = State()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state


def get_app(ctx: click.Context | None = None, *, create: bool = False) -> App:
    """The opened app; ``create=True`` may create the database (serve, worker, db upgrade)."""
    return _state(ctx).app(create=create)


def get_settings(ctx: click.Context | None = None, *, create: bool = False) -> Settings:
    """Validated, checked settings for commands that need no database; ``create=True``
    (db upgrade) may keep a new secret key."""
    return _state(ctx).settings(create=create)


@contextmanager
def user_errors() -> Iterator[None]:
    """Translate our errors into one line on stderr and exit code 1."""
    try:
        yield
    except NewsletterError as exc:
        raise click.ClickException(str(exc)) from exc


def parse_now(value: str | None, *, option: str = "--now") -> datetime:
    """``--now`` as an aware UTC datetime (naive input is taken as UTC)."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO-8601; use e.g. 2026-12-01T09:00:00+00:00",
            param_hint=option,
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


class OneLineErrors(click.Group):
    """The root group: a usage error is one line on stderr (exit code 2, as click's).

    Click prints the usage, a "Try --help" hint and the error over several lines; here the
    line names the problem and the help to read, e.g.
    ``Error: Invalid value for '--now': 'x' is not ISO-8601; ... (see `newsletter tick --help`)``.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else self.name
            click.echo(f"Error: {exc.format_message()} (see `{path} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt):
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


class PortInUseError(NewsletterError):
    """The TCP port for ``serve`` is taken (or cannot be bound)."""


def bind_port(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); ``PortInUseError`` in one line when it is taken.

    Bound here, before the banner and the scheduler, so a busy port is one clear line
    instead of uvicorn's log lines and errno 98; uvicorn then serves on this socket.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUseError(f"cannot use --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (another `newsletter serve`?); "
                f"stop it, or pick another port: --port {port + 1} (make serve PORT={port + 1})"
            ) from None
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
