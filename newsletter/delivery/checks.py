"""Is an email fit to hand to a backend? Checks every backend needs (pure).

The dispatcher runs ``message_problem`` (and the backend's own ``problem`` when it has
one, e.g. SendGrid's) on each email before its chunk is handed over: an email that fails
is recorded ``failed`` with the reason and the rest of the chunk goes out. SMTP and the
outbox check the very bytes they send as they build them (``mime.build_checked``), with
the same outcome for an email that fails.
"""

from __future__ import annotations

import functools
import re

from newsletter.delivery.base import OutgoingEmail
from newsletter.one_line import ENCODED_WORD_OPENER, is_one_line, is_plain_line

# One "@", something on each side, no space, control character or address punctuation
# that would let the address be read as more than one (or as a display name).
_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"\x00-\x1f\x7f]+@[^\s@<>()\[\]\\,;:\"\x00-\x1f\x7f]+")


def address_problem(address: str, role: str) -> str | None:
    """Why ``address`` cannot stand alone in a header, or ``None``."""
    if not _ADDRESS.fullmatch(address):
        return f"the {role} address {address[:80]!r} is not a single plain address"
    if ENCODED_WORD_OPENER in address:
        return (
            f"the {role} address {address[:80]!r} holds {ENCODED_WORD_OPENER!r}, which mail "
            "software would decode as an RFC 2047 encoded word"
        )
    return None


def _unencodable(value: str) -> int | None:
    """Position of the first character UTF-8 cannot encode (a lone surrogate), if any."""
    if value.isascii():  # no copy made: the common case for bodies
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def message_problem(message: OutgoingEmail) -> str | None:
    """Why ``message`` cannot be sent as it is, or ``None`` when it can."""
    for role, address in (("recipient", message.to_email), ("sender", message.from_email)):
        problem = address_problem(address, role)
        if problem:
            return problem
    if message.reply_to:
        problem = address_problem(message.reply_to, "reply-to")
        if problem:
            return problem
    # The values that become header lines; the common, plain ones pass both checks below
    # (``is_plain_line``) and are not looked at again.
    single = [
        (role, value)
        for role, value in (
            ("subject", message.subject),
            ("recipient name", message.to_name or ""),
            ("sender name", message.from_name or ""),
            ("Message-ID", message.message_id or ""),
            *((f"{name} header", value) for name, value in message.headers.items()),
            *((f"category {n}", c) for n, c in enumerate(message.categories, start=1)),
        )
        if not is_plain_line(value)
    ]
    for role, value in single:
        if not is_one_line(value):
            return f"the {role} {value[:80]!r} would not stay one header line"
    parts = (
        ()
        if _skeleton_encodable(message)
        else (("html part", message.html), ("text part", message.text))
    )
    for role, value in (*single, *parts):
        position = _unencodable(value)
        if position is not None:
            return f"the {role} holds a character UTF-8 cannot encode at position {position}"
    return None


def _skeleton_encodable(message: OutgoingEmail) -> bool:
    """True when ``message``'s parts are known to encode from its skeleton: the skeleton's
    html and text (shared by a batch: each checked once) and this email's values encode,
    and they give exactly its html and text (``Skeleton``'s promise, which SendGrid relies
    on too: it sends the skeleton and the values), so nothing else is in them. ``False``
    (the parts are then checked whole, reporting the position) when any does not, or there
    is no skeleton. SMTP and the outbox encode the parts themselves when they build the
    email: a part that cannot be encoded fails that email there."""
    skeleton = message.skeleton
    if skeleton is None:
        return False
    if _cached_unencodable(skeleton.html) is not None:
        return False
    if _cached_unencodable(skeleton.text) is not None:
        return False
    return all(_unencodable(value) is None for _, value in skeleton.substitutions)


@functools.lru_cache(maxsize=64)
def _cached_unencodable(value: str) -> int | None:
    """``_unencodable`` of a skeleton's part: the same few strings for a whole batch (a
    string keeps its hash, so a repeat costs a lookup, not a pass over the text)."""
    return _unencodable(value)
