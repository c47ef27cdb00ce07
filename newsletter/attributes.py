"""Custom fields: validation of ``subscribers.attributes`` and event properties (pure).

Limits (copied into the README):

* names: a letter or ``_`` then letters, digits or ``_``, at most 40 characters
  (``plan``, ``country``, ``order_total``); names are case-sensitive;
* values: a string (at most 500 characters), a number (finite) or ``true``/``false``;
  ``null`` in an update removes the field;
* at most 50 fields, and at most 8 KB as JSON, per subscriber (and per event).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from newsletter.errors import InvalidAttributes

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
MAX_FIELDS = 50
MAX_STRING = 500
MAX_BYTES = 8 * 1024

Value = str | int | float | bool


def check_name(name: object, *, what: str = "attribute") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        shown = repr(name)[:60]
        raise InvalidAttributes(
            f"bad {what} name {shown}: start with a letter or _, then letters, digits or _, "
            "at most 40 characters (e.g. plan, order_total)"
        )
    return name


def check_value(name: str, value: object, *, what: str = "attribute") -> Value:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise InvalidAttributes(f"{what} {name!r}: {value} is too large (at most 2**53)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAttributes(f"{what} {name!r}: {value} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidAttributes(
                f"{what} {name!r} is {len(value)} characters long; at most {MAX_STRING}"
            )
        return value
    raise InvalidAttributes(
        f"{what} {name!r} must be a string, a number or true/false, got {type(value).__name__}"
    )


def check_size(values: Mapping[str, Value], *, what: str = "attributes") -> None:
    if len(values) > MAX_FIELDS:
        raise InvalidAttributes(f"{len(values)} {what}; at most {MAX_FIELDS} are allowed")
    size = len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_BYTES:
        raise InvalidAttributes(f"{what} take {size} bytes as JSON; at most {MAX_BYTES}")


def validate(raw: object, *, what: str = "attribute") -> dict[str, Value]:
    """A checked copy of a JSON object of custom fields; ``InvalidAttributes`` if not."""
    if not isinstance(raw, Mapping):
        raise InvalidAttributes(f"{what}s must be a JSON object of name: value pairs")
    checked = {check_name(k, what=what): check_value(k, v, what=what) for k, v in raw.items()}
    check_size(checked, what=f"{what}s")
    return checked


def merge(current: Mapping[str, Any], changes: Mapping[str, object]) -> dict[str, Value]:
    """``current`` with ``changes`` applied (a ``None`` value removes the field), checked."""
    merged: dict[str, Any] = dict(current)
    for name, value in changes.items():
        check_name(name)
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = check_value(name, value)
    check_size(merged)
    return merged


def text_of(value: object) -> str:
    """How ``--where NAME=VALUE`` compares a stored value: JSON text for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
