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
