"""``one_line``: the one cleaner for values that may reach an email header (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.one_line import is_one_line, one_line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann", "Ann"),
        ("  Ann   Lee ", "Ann Lee"),
        ("Ann\r\nBcc: x@evil.example", "Ann Bcc: x@evil.example"),
        ("Ann\u2028Lee\u2029Kim\u0085Bo", "Ann Lee Kim Bo"),
        ("Ann\x00Lee", "Ann Lee"),
        ("Ann\ud800Lee", "Ann Lee"),
        ("x=?utf-8?q?=0D=0ABcc:_a@b?=", "x= ?utf-8?q?=0D=0ABcc:_a@b?="),
        ("==??", "== ??"),
        ("=\n?", "= ?"),
        ("a = b? yes", "a = b? yes"),
        ("Jo\u0308rg", "Jörg"),  # NFC
        ("", ""),
        # Each alone fails one condition of the plain-ASCII fast path (is_plain_line).
        ("Ann  Lee", "Ann Lee"),
        (" Ann", "Ann"),
        ("Ann ", "Ann"),
        ("Ann\tLee", "Ann Lee"),
    ],
    ids=[
        "plain",
        "spaces",
        "crlf",
        "unicode-breaks",
        "nul",
        "lone-surrogate",
        "encoded-word",
        "doubled-opener",
        "opener-split-by-newline",
        "equals-and-question-apart",
        "nfc",
        "empty",
        "inner-double-space",
        "leading-space",
        "trailing-space",
        "tab",
    ],
)
def test_one_line(value: str, expected: str) -> None:
    assert one_line(value) == expected


@given(st.text())
def test_no_cleaned_value_can_split_a_header_or_open_an_encoded_word(value: str) -> None:
    cleaned = one_line(value)
    assert "=?" not in cleaned
    assert not any(ch in cleaned for ch in "\r\n\x00\u2028\u2029\u0085")
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert one_line(cleaned) == cleaned
    assert is_one_line(cleaned)


def test_is_one_line() -> None:
    assert is_one_line("Ann Lee")
    assert not is_one_line("Ann\nLee")
    assert not is_one_line("x=?utf-8?q?a?=")
    assert not is_one_line(" Ann")
