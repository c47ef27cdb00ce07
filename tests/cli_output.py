"""Reading CLI output in tests: every command that opens the database or the content folder
starts its stderr with one line saying which (``using database ..., content ...``)."""

from __future__ import annotations

CONTEXT_PREFIX = "using database "


def after_context(stderr: str) -> str:
    """*stderr* after its first line, which must be the context line."""
    first, _, rest = stderr.partition("\n")
    assert first.startswith(CONTEXT_PREFIX), stderr
    assert ", content " in first, stderr
    return rest
