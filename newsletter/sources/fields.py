"""Find the email and first name among a form's own field names (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

EMAIL_NAMES = frozenset({"email", "emailaddress", "youremail", "mail", "e-mail"})
FIRST_NAME_NAMES = frozenset({"firstname", "first", "givenname", "fname", "vorname", "prenom"})
FULL_NAME_NAMES = frozenset({"name", "fullname", "yourname"})
_NOISE = re.compile(r"[\s_\-\[\]().:*?]+")


def normalized(label: str) -> str:
    """``"First Name"``, ``first_name`` and ``FIRST-NAME`` all become ``firstname``."""
    return _NOISE.sub("", label).lower()


def text(value: Any) -> str | None:
    """A non-empty string value, else None (numbers, lists and objects are not text)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def first_word(name: str | None) -> str | None:
    return name.split()[0] if name and name.split() else None


def pick(pairs: Iterable[tuple[str, Any]], names: frozenset[str]) -> str | None:
    """The first text value whose normalized label is one of ``names``."""
    for label, value in pairs:
        if normalized(label) in names and text(value):
            return text(value)
    return None


def email_in(pairs: Iterable[tuple[str, Any]]) -> str | None:
    pairs = list(pairs)
    found = pick(pairs, frozenset(EMAIL_NAMES))
    if found:
        return found
    for label, value in pairs:  # "Work email", "Email (required)"
        if "email" in normalized(label) and text(value):
            return text(value)
    return None


NOT_A_PERSONS_NAME = ("last", "sur", "family", "company", "user", "business", "file", "domain")


def first_name_in(pairs: Iterable[tuple[str, Any]]) -> str | None:
    """A first name: exact labels first, then questions like "What's your first name?"."""
    pairs = list(pairs)
    found = pick(pairs, FIRST_NAME_NAMES) or first_word(pick(pairs, FULL_NAME_NAMES))
    if found:
        return found
    for label, value in pairs:
        key = normalized(label)
        if "firstname" in key and text(value):
            return first_word(text(value))
    for label, value in pairs:
        key = normalized(label)
        if "name" in key and not any(word in key for word in NOT_A_PERSONS_NAME) and text(value):
            return first_word(text(value))
    return None


def flat(fields: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(email, first name) from a flat ``{label: value}`` mapping."""
    pairs = list(fields.items())
    return email_in(pairs), first_name_in(pairs)
