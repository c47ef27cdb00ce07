"""Read ``sources.yaml`` and each source's secrets from the environment (the I/O edge)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from newsletter.errors import ContentError
from newsletter.sources.config import SourceConfig, parse_sources


def read_sources(path: Path) -> tuple[dict[str, SourceConfig], list[ContentError]]:
    """The sources of ``path`` and its problems; a missing file means no sources."""
    if not path.exists():
        return {}, []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [ContentError(f"cannot read the sources file: {exc}", str(path))]
    return parse_sources(text, str(path))


def load_sources(path: Path) -> dict[str, SourceConfig]:
    """The sources, or the first problem raised as ``ContentError``."""
    sources, problems = read_sources(path)
    if problems:
        raise problems[0]
    return sources


def source_secrets(
    source: SourceConfig, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """``secret_env`` holds ``new`` or ``new,old``: every secret verifies (rotation)."""
    raw = (os.environ if environ is None else environ).get(source.secret_env, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())
