"""Email validation and normalisation (pure, no DNS)."""

from __future__ import annotations

import pytest

from newsletter.addresses import email_hash, normalize_email
from newsletter.errors import InvalidEmailError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("reader@example.org", "reader@example.org"),
        ("  Reader@Example.ORG ", "reader@example.org"),
        ("jos\u0065\u0301@example.org", "jos\u00e9@example.org"),  # NFC
        ("user@B\u00dcCHER.example", "user@b\u00fccher.example"),
    ],
    ids=["plain", "case-and-space", "unicode-nfc", "idn"],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "plainaddress",
        "a@@example.org",
        "a@example",
        "a b@example.org",
        "a@example..org",
        "x" * 250 + "@example.org",
    ],
    ids=["empty", "blank", "no-at", "double-at", "no-tld", "space", "double-dot", "too-long"],
)
def test_invalid(raw: str) -> None:
    with pytest.raises(InvalidEmailError):
        normalize_email(raw)


def test_hash_is_stable_over_normalised_forms() -> None:
    assert email_hash(normalize_email("A@Example.org")) == email_hash("a@example.org")
