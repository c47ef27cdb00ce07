"""Cursor pagination: an opaque ``next_cursor`` names the last row of a page (keyset)."""

from __future__ import annotations

import base64
import binascii
import json

from newsletter.web.api.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(kind: str, last: int) -> str:
    raw = json.dumps([kind, last], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> int:
    """The last id of the previous page (0 for the first page); 400 for a bad cursor."""
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        found = None
    if (
        not isinstance(found, list)
        or len(found) != 2
        or found[0] != kind
        or not isinstance(found[1], int)
        or isinstance(found[1], bool)
        or not 0 <= found[1] < 2**63
    ):
        raise ApiError(
            400,
            "invalid_cursor",
            "the cursor is not one this API handed out; start again without it",
        )
    return int(found[1])
