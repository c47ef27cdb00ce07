"""Parse a SendGrid event batch into values, with the keys that make each event unique.

Pure: no I/O, no clock. Decisions:

* The body must be a JSON array (else ``EventPayloadError``, HTTP 400). Inside it, an
  element that is not an object, has no ``event`` name or no usable ``timestamp`` is
  ignored and counted, so one odd event never makes SendGrid retry the whole batch.
* The logical key is SHA-256 over (``sg_message_id``, ``event``, ``timestamp``, normalised
  ``email``), plus the ``url`` for ``click`` events so two clicks on different links in
  the same second stay two events. A retry that carries a new ``sg_event_id`` has the same
  logical key, so it is stored once.
* Personal data stays out of the stored payload: ``email``, ``ip`` and ``useragent`` are
  dropped (the row keeps the address hash), and the address is blanked out of any other
  text (bounce reasons often quote it), so ``forget`` leaves nothing readable behind.
* Text PostgreSQL cannot store is made storable, so a verified body never makes the
  service answer 5xx: an escaped NUL becomes U+FFFD, an escaped lone surrogate ``?``,
  and the non-standard ``NaN``/``Infinity`` (or a number that overflows to infinity)
  ``null``. Genuine SendGrid bodies contain none of these; the raw bytes are scanned
  for their escapes, and only a body that has one is walked.
* ``delivery_id`` (our ``custom_args``, which SendGrid puts at the top level of each
  event) is taken when it is a positive integer; anything else is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from newsletter.addresses import email_hash, normalize_email
from newsletter.errors import InvalidEmailError, NewsletterError
from newsletter.json_input import JsonInputError, load_json

PERSONAL_FIELDS = frozenset({"email", "ip", "useragent"})
REDACTED = "<redacted>"
MAX_EVENT_NAME = 32
MAX_EVENT_ID = 200
MAX_MESSAGE_ID = 300
MAX_DELIVERY_ID = 2**63 - 1
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"[0-9]{1,19}")
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
# Addresses the validator can only lower-case or refuse (both give ``str.lower()`` here):
# plain ASCII atoms, no quoting, no IDNA ``xn--`` label that it would turn into Unicode.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,189}")
_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class EventPayloadError(NewsletterError, ValueError):
    """The signed body is not a JSON array of events (HTTP 400)."""


@dataclass(frozen=True)
class ParsedEvent:
    """One event as we store it; ``email`` is normalised and never stored in ``payload``."""

    event: str
    occurred_at: datetime
    logical_key: str
    email: str | None
    email_hash: str | None
    sg_event_id: str | None
    sg_message_id: str | None
    delivery_id: int | None
    bounce_type: str | None  # SendGrid's ``type`` on bounce events: "bounce" or "blocked"
    reason: str | None
    payload: Mapping[str, Any]

    @property
    def provider_message_id(self) -> str | None:
        """The send API's ``X-Message-Id``: ``sg_message_id`` before its filter suffix."""
        if not self.sg_message_id:
            return None
        return self.sg_message_id.split(".", 1)[0][:200] or None


@dataclass(frozen=True)
class ParsedBatch:
    events: tuple[ParsedEvent, ...]
    ignored: tuple[str, ...] = field(default=())  # why each ignored element was ignored


def parse_batch(body: bytes) -> ParsedBatch:
    """Parse a webhook body; raise ``EventPayloadError`` unless it is a JSON array."""
    try:
        data = load_json(body, parse_constant=_no_constant, parse_float=_finite_float)
    except JsonInputError as exc:  # bad JSON, nesting too deep, an integer too long
        raise EventPayloadError(str(exc)) from None
    if _UNSTORABLE_ESCAPE.search(body):
        data = _storable(data)
    if not isinstance(data, list):
        raise EventPayloadError("the body must be a JSON array of SendGrid events")
    events: list[ParsedEvent] = []
    ignored: list[str] = []
    for index, raw in enumerate(data):
        parsed = parse_event(raw)
        if isinstance(parsed, str):
            ignored.append(f"event {index}: {parsed}")
        else:
            events.append(parsed)
    return ParsedBatch(tuple(events), tuple(ignored))


def parse_event(raw: object) -> ParsedEvent | str:
    """One event, or the reason it cannot be used."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    name = raw.get("event")
    if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
        return "no usable 'event' name"
    occurred = _timestamp(raw.get("timestamp"))
    if occurred is None:
        return "no usable 'timestamp'"
    raw_email = raw.get("email") if isinstance(raw.get("email"), str) else None
    email = _normalise(raw_email)
    message_id = _text(raw.get("sg_message_id"), MAX_MESSAGE_ID)
    url = raw.get("url") if name == "click" and isinstance(raw.get("url"), str) else None
    return ParsedEvent(
        event=name,
        occurred_at=occurred,
        logical_key=logical_key(message_id, name, int(occurred.timestamp()), email, url),
        email=email,
        email_hash=_hash(email) if email else None,
        sg_event_id=_text(raw.get("sg_event_id"), MAX_EVENT_ID, truncate=False),
        sg_message_id=message_id,
        delivery_id=_delivery_id(raw.get("delivery_id")),
        bounce_type=_text(raw.get("type"), 32) if name == "bounce" else None,
        reason=_text(raw.get("reason"), 2000),
        payload=scrub(raw, raw_email),
    )


def logical_key(
    message_id: str | None, event: str, timestamp: int, email: str | None, url: str | None
) -> str:
    """SHA-256 hex of what makes two deliveries of an event the same event."""
    parts: list[object] = [message_id or "", event, timestamp, email or ""]
    if url is not None:
        parts.append(url)
    encoded = _KEY_ENCODER.encode(parts)  # the same text as json.dumps with these options
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def scrub(raw: Mapping[str, Any], raw_email: str | None) -> dict[str, Any]:
    """The event without personal fields, the address blanked out of any text."""
    needle = raw_email.strip().lower() if raw_email else ""
    return {k: _blank(v, needle) for k, v in raw.items() if k not in PERSONAL_FIELDS}


def _blank(value: Any, needle: str) -> Any:
    if not needle:
        return value
    if isinstance(value, str):
        return _replace_folded(value, needle) if "@" in value else value
    if isinstance(value, list):
        return [_blank(v, needle) for v in value]
    if isinstance(value, dict):
        return {k: _blank(v, needle) for k, v in value.items()}
    return value


def _replace_folded(text: str, needle: str) -> str:
    """Replace ``needle`` (lower case) in ``text`` ignoring case, without a regex per event."""
    folded = text.lower()
    if len(folded) != len(text) or needle not in folded:  # lower() changed lengths: rare
        if needle in folded:
            return re.sub(re.escape(needle), REDACTED, text, flags=re.IGNORECASE)
        return text
    parts: list[str] = []
    start = 0
    while (found := folded.find(needle, start)) != -1:
        parts.append(text[start:found])
        parts.append(REDACTED)
        start = found + len(needle)
    parts.append(text[start:])
    return "".join(parts)


def _no_constant(_name: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, and not storable as JSON


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _storable(value: Any) -> Any:
    """``value`` with every string (keys too) free of NUL and lone surrogates."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def event_email(raw: str | None) -> str | None:
    """An event's ``email`` as the drain normalises it (``None`` when blank)."""
    return _normalise(raw)


def _normalise(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if _PLAIN_ADDRESS.fullmatch(text) and "xn--" not in text.lower():
        return text.lower()  # what ``_normalise_cached`` returns, without the validator
    return _normalise_cached(raw)


@functools.lru_cache(maxsize=8192)  # a batch names the same recipients many times
def _hash(email: str) -> str:
    return email_hash(email)


@functools.lru_cache(maxsize=8192)
def _normalise_cached(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidEmailError:
        return raw.strip().lower()[:320]


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _ascii_int(value)
    if not isinstance(value, int | float):
        return None
    try:
        moment = datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if moment >= EARLIEST else None


def _delivery_id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _ascii_int(value)
    if isinstance(value, int) and 0 < value <= MAX_DELIVERY_ID:
        return value
    return None


def _ascii_int(value: str) -> int | None:
    text = value.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def _text(value: object, limit: int, *, truncate: bool = True) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value) > limit:
        return value[:limit] if truncate else None
    return value
