"""Text that must stay on one line (names, subjects, header values). Pure."""

from __future__ import annotations

import unicodedata


def one_line(value: str) -> str:
    """NFC, with control and line-break characters (CR, LF, U+0085, U+2028 ...) turned into
    spaces and runs of spaces collapsed, so no value can split an email header."""
    text = unicodedata.normalize("NFC", value)
    return " ".join(
        "".join(
            " "
            if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
            else ch
            for ch in text
        ).split()
    )


# ---- input side: text a stranger sends (form fields, tags) -------------------------------


def unstorable_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored or sent as text, or None.

    A NUL character (PostgreSQL refuses it in text columns) and a lone surrogate (half of
    a UTF-16 pair, not Unicode at all: it cannot be encoded as UTF-8) both qualify.
    """
    if "\x00" in value:
        return "a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (text that is not valid Unicode)"
    return None


def clean_tag(value: str, *, max_length: int) -> str:
    """A tag cleaned like a name: one line (control, line-break and surrogate characters
    become spaces, runs collapse), lower case, at most ``max_length`` characters."""
    return one_line(value).lower()[:max_length].strip()
