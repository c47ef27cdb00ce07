"""IANA time-zone lookup that never raises anything but ``None`` for a bad name. Pure.

``ZoneInfo`` raises ``ZoneInfoNotFoundError`` or ``ValueError`` for unknown names, but also
``IsADirectoryError`` ("Europe") and other ``OSError``s ("a" * 300): every caller needs
all of them handled the same way, so they all come here.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_ZONE_NAME = 64  # the longest IANA name is about 30 characters


def find_zone(name: str | None) -> ZoneInfo | None:
    """The zone called ``name``, or None when there is no such zone."""
    if not name or len(name) > MAX_ZONE_NAME:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
