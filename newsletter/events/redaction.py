"""Erase one address from a stored SendGrid webhook body (``forget``). Pure: no I/O.

``redact_address(body, email)`` returns the body with no trace of ``email`` (already
normalised, as ``normalize_email`` gives it) that a case-insensitive byte search or a JSON
parse would find, and every other event intact:

* **A body that parses as JSON** is rewritten. An event (any JSON object) whose ``email``
  is the address, normalised as the drain normalises it, loses its personal fields
  (``email``, ``ip``, ``useragent``): applied later, it is stored like any event whose
  address is unknown. In every other string and key, anywhere, each case-insensitive
  occurrence of the address becomes ``REDACTED`` (a bounce reason quoting it). The one
  exception is the ``email`` of another event: that is someone else's address, kept even
  when it contains this one (``joann@example.org`` is not ``ann@example.org``), so every
  other event is applied exactly as before. The result is written with ASCII escapes;
  values keep their meaning (``parse_batch`` gives the same events).
* **Bytes that do not parse** (kept aside with a problem) are searched for the address in
  every spelling JSON text allows: each character as itself in either case, or as a
  ``\\uXXXX`` escape (hex digits in either case, of either letter case), ``/`` also as
  ``\\/``, a character beyond U+FFFF as its escaped surrogate pair. Each match becomes
  ``REDACTED``, with no look at what surrounds it: these bytes cannot be applied anyway,
  so a longer address that contains this one is blanked too (privacy first).

An address with a non-ASCII domain is also looked for with the domain in its ASCII
(``xn--``) form, which is how SendGrid may spell it.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import idna

from newsletter.events.parsing import PERSONAL_FIELDS, REDACTED, event_email
from newsletter.json_input import JsonInputError, load_json

_MARKER = REDACTED.encode("ascii")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def redact_address(body: bytes, email: str) -> bytes:
    """``body`` without ``email`` (normalised); ``body`` itself when it never names it."""
    spellings = address_spellings(email)
    pattern = spelled_in_bytes(spellings)
    if not pattern.search(body):
        return body
    try:
        data = load_json(body)
    except JsonInputError:
        return pattern.sub(_MARKER, body)
    text_pattern = re.compile("|".join(re.escape(s) for s in spellings), re.IGNORECASE)
    redacted = _redact(data, email, text_pattern)
    return _ENCODER.encode(redacted).encode("ascii")


def address_spellings(email: str) -> list[str]:
    """The address, and with an ASCII (``xn--``) domain when its domain is not ASCII."""
    spellings = [email]
    local, _, domain = email.rpartition("@")
    if local and not domain.isascii():
        # A domain IDNA cannot spell: only the Unicode form is looked for.
        with contextlib.suppress(idna.IDNAError):
            spellings.append(f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}")
    return spellings


def spelled_in_bytes(spellings: list[str]) -> re.Pattern[bytes]:
    """A pattern for any of ``spellings`` as it may appear in raw JSON bytes."""
    return re.compile(b"|".join(_spelled(s) for s in spellings))


def _spelled(text: str) -> bytes:
    return b"".join(_character(c) for c in text)


def _character(char: str) -> bytes:
    forms = {char, char.lower(), char.upper()}
    options: list[bytes] = []
    for form in sorted(forms):
        if len(form) != 1:  # a case change that adds characters ("ß".upper()): as is only
            continue
        options.append(re.escape(form.encode("utf-8")))
        options.append(_escaped(form))
    if char == "/":
        options.append(rb"\\/")
    return b"(?:" + b"|".join(options) + b")"


def _escaped(char: str) -> bytes:
    """``\\uXXXX`` for ``char`` (a surrogate pair beyond U+FFFF), hex in either case."""
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return _escape_unit(0xD800 + (code >> 10)) + _escape_unit(0xDC00 + (code & 0x3FF))
    return _escape_unit(code)


def _escape_unit(code: int) -> bytes:
    digits = f"{code:04x}"
    hex_pattern = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)
    return rb"\\u" + hex_pattern.encode("ascii")


def _redact(value: Any, email: str, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, list):
        return [_redact(v, email, pattern) for v in value]
    if isinstance(value, dict):
        raw = value.get("email")
        own = isinstance(raw, str) and event_email(raw) == email
        result: dict[str, Any] = {}
        for key, item in value.items():
            if own and key in PERSONAL_FIELDS:
                continue
            if key == "email" and isinstance(item, str):
                result[key] = item  # another address (this one was matched just above)
            else:
                result[pattern.sub(REDACTED, key)] = _redact(item, email, pattern)
        return result
    return value
