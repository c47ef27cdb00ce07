"""Text that must stay on one line (names, tags, subjects, header values). Pure.

The one place where a value a stranger supplied (a name, a tag, an attribute, a source)
is made safe for an email header, on every backend: ``one_line`` is applied when values
come in (``subscriptions.clean_first_name``) and again when headers are built
(``compose.compose`` for every backend, ``delivery.mime`` for SMTP and the outbox).
"""

from __future__ import annotations

import unicodedata

# RFC 2047 encoded words start with "=?". A MIME library that reads header text decodes
# them (Python's email package does, even inside a word), so "=?utf-8?q?=0D=0A...?=" in
# a name would turn into a real line break and new headers. No cleaned value holds one.
ENCODED_WORD_OPENER = "=?"
DEFUSED_OPENER = "= ?"


def one_line(value: str) -> str:
    """NFC, with control and line-break characters (CR, LF, U+0085, U+2028 ...) turned into
    spaces, runs of spaces collapsed, and every encoded-word opener ``=?`` split into
    ``= ?``, so no value can split an email header, not even once a MIME library has
    decoded it."""
    if is_plain_line(value):
        return value  # already one line (NFC changes no ASCII text): the common case
    text = unicodedata.normalize("NFC", value)
    spaced = " ".join(
        "".join(
            " "
            if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
            else ch
            for ch in text
        ).split()
    )
    return spaced.replace(ENCODED_WORD_OPENER, DEFUSED_OPENER)


def is_plain_line(value: str) -> bool:
    """True for the common case ``one_line`` leaves alone without looking further: ASCII
    with no control character, no whitespace but single inner spaces, no ``=?`` (so it
    is one line, and UTF-8 encodes it)."""
    return (
        value.isascii()
        and value.isprintable()  # ASCII: no control characters, no whitespace but " "
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
        and ENCODED_WORD_OPENER not in value
    )


def is_one_line(value: str) -> bool:
    """True when ``value`` is already what ``one_line`` makes of it."""
    return one_line(value) == value


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
