"""Start-up checks every command runs after the settings parsed: the files they name.

``Settings`` validates values (a URL, a rate, an origin); this module checks what those
values point at on disk, before anything is written: a content folder that is missing
means the command was run outside the project, so nothing (no database, no secret key)
may be created there. Each problem is a ``ConfigurationError`` naming the variable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from newsletter.errors import ConfigurationError
from newsletter.settings import PREFIX, Settings

OUTSIDE_PROJECT = (
    "run newsletter from the project folder (the one with content/, templates/ and "
    "cron.yaml), or set {variable}"
)


def check_files(settings: Settings) -> None:
    """Refuse missing content/templates folders, a missing cron file, an unwritable outbox."""
    _require_dir(settings.content_dir, "CONTENT_DIR", "content folder")
    _require_dir(settings.templates_dir, "TEMPLATES_DIR", "templates folder")
    cron = settings.cron_file
    if not cron.is_file():
        raise ConfigurationError(
            PREFIX + "CRON_FILE",
            f"cron file {str(cron)!r} not found; create it (see cron.yaml in the project) or "
            f"{OUTSIDE_PROJECT.format(variable=PREFIX + 'CRON_FILE')}",
        )
    if settings.mail_backend == "outbox":
        check_writable(settings.effective_outbox_dir, PREFIX + "OUTBOX_DIR")


def _require_dir(path: Path, name: str, what: str) -> None:
    if not path.is_dir():
        variable = PREFIX + name
        raise ConfigurationError(
            variable,
            f"{what} {str(path.absolute())!r} not found; "
            + OUTSIDE_PROJECT.format(variable=variable),
        )


def check_writable(folder: Path, variable: str) -> None:
    """``folder`` exists (it is created) and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # deleted on close
    except OSError as exc:
        raise ConfigurationError(
            variable,
            f"cannot write to {str(folder)!r} ({exc.strerror or exc}); make it writable or "
            f"point {variable} at a folder you can write",
        ) from None
