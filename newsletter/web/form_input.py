"""Parse and check what ``POST /subscribe`` receives (pure functions over bytes/strings).

Repeated fields: a form field sent more than once (``tags=a&tags=b``, urlencoded or
multipart) becomes a list of its values, in order; a JSON list is read the same way.
A text field (``email``, ``first_name``, ``timezone``, ``source``, ``redirect``, the
honeypot) takes the first value of a list (an empty list is an empty value); ``tags``
takes every value, each split on commas. JSON ``null`` is the same as leaving the field
out. Any other type (a number, an object, ``true``) is a 400 that names the field.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from newsletter.errors import NewsletterError
from newsletter.json_input import JsonInputError, load_json
from newsletter.one_line import unstorable_reason

EMAIL_FIELDS = ("email", "EMAIL", "email_address", "contact[email]")
NAME_FIELDS = ("first_name", "name", "FNAME")
HONEYPOT = "website"
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class BadRequest(NewsletterError, ValueError):
    """A client error with its HTTP status; the message is shown to the caller."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class SubscribeForm:
    email: str
    first_name: str | None
    timezone: str | None
    tags: tuple[str, ...]
    source: str | None
    redirect: str | None
    honeypot_filled: bool


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = load_json(body)
    except JsonInputError as exc:  # bad JSON, nesting too deep, an integer too long
        raise BadRequest(400, str(exc)) from None
    if not isinstance(data, dict):
        raise BadRequest(400, "the JSON body must be an object with an 'email' field")
    return data


def parse_urlencoded(body: bytes) -> dict[str, Any]:
    """The fields of an urlencoded body; ``BadRequest(400)`` when it (or a percent-escape
    in it, such as ``%FF``) is not UTF-8."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(400, "the form body is not UTF-8; send the form as UTF-8") from None
    return collect_fields(pairs)


def collect_fields(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Form pairs as a dict: a key sent once maps to its value, a repeated key to the list
    of its values in the order sent."""
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


def _first_text(fields: Mapping[str, Any], names: tuple[str, ...], label: str) -> str | None:
    for name in names:
        if name in fields:
            value = fields[name]
            if isinstance(value, list):
                value = value[0] if value else ""
            if value is None:  # JSON null: as if the field were not sent
                continue
            if not isinstance(value, str):
                raise BadRequest(400, f"'{label}' must be a string")
            return _storable(value, label)
    return None


def _storable(value: str, label: str) -> str:
    """``value`` unchanged, or ``BadRequest`` when it holds text nothing can store."""
    reason = unstorable_reason(value)
    if reason is not None:
        raise BadRequest(400, f"the '{label}' field contains {reason}; remove it and try again")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(
            t for v in value for t in (p.strip() for p in _storable(v, "tags").split(",")) if t
        )
    raise BadRequest(400, "'tags' must be a string or a list of strings")


def read_form(fields: Mapping[str, Any], *, honeypot_field: str = HONEYPOT) -> SubscribeForm:
    """Map the accepted field aliases; raise ``BadRequest`` for a missing or bad field.

    ``honeypot_field`` (``NEWSLETTER_HONEYPOT_FIELD``) must stay empty on browser forms.
    """
    email = _first_text(fields, EMAIL_FIELDS, "email")
    honeypot = _first_text(fields, (honeypot_field,), honeypot_field)
    if not email or not email.strip():
        raise BadRequest(400, "the 'email' field is required")
    return SubscribeForm(
        email=email,
        first_name=_first_text(fields, NAME_FIELDS, "first_name"),
        timezone=_first_text(fields, ("timezone",), "timezone"),
        tags=_tags(fields.get("tags", fields.get("tags[]"))),
        source=_first_text(fields, ("source",), "source"),
        redirect=_first_text(fields, ("redirect",), "redirect"),
        honeypot_filled=bool(honeypot and honeypot.strip()),
    )


def _refused_character(c: str) -> bool:
    """Space, a control or format character (tab, DEL, U+0085, U+200B ...), a line or
    paragraph separator, or a backslash: ``urlsplit`` drops some of them (``shop.exa\tmple``
    reads as ``shop.example``) and browsers read a backslash as a slash."""
    return c == "\\" or unicodedata.category(c)[0] in ("C", "Z")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, else None. The default port
    (443 for https, 80 for http) is left out, so ``https://shop.example:443`` is the same
    origin as ``https://shop.example``; an IPv6 host keeps its brackets."""
    if any(_refused_character(c) for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def check_redirect(url: str, allowed: tuple[str, ...]) -> str:
    """Return ``url`` if its origin is allowed; raise ``BadRequest`` otherwise."""
    origin = origin_of(url)
    normalised_allowed = {origin_of(a) for a in allowed}
    if origin is None or origin not in normalised_allowed:
        raise BadRequest(400, "the 'redirect' URL is not on an allowed origin")
    return url


def check_signature(body: bytes, header: str | None, secret: str) -> None:
    """Verify ``X-Newsletter-Signature: sha256=<hex>`` when present."""
    if header is None:
        return
    if not secret:
        raise BadRequest(403, "signed requests are not accepted: no form secret is configured")
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not HEX_DIGEST.fullmatch(given):
        raise BadRequest(403, "X-Newsletter-Signature must look like sha256=<64 hex digits>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise BadRequest(403, "X-Newsletter-Signature does not match the body")
