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
    digest = email_hash(normalize_email("A@Example.org"))
    assert digest == email_hash("a@example.org")
    # the known SHA-256 of the normalised form: forgotten subscribers' suppressions depend on it
    assert digest == "e16bfe08be114c7b3737aa01ce504ebcb5d13fc44897c38c6cac63ddc7151463"


def _address(length: int) -> str:
    """A syntactically valid address of exactly ``length`` characters (labels <= 63)."""
    domain_len = length - 65
    labels, left = [], domain_len - 4  # ".org"
    while left > 0:
        take = min(63, left)
        labels.append("d" * take)
        left -= take + 1
    address = "a" * 64 + "@" + ".".join(labels) + ".org"
    assert len(address) == length
    return address


def test_a_254_character_address_is_accepted() -> None:
    address = _address(254)
    assert normalize_email(address) == address


def test_a_255_character_address_is_refused_saying_why() -> None:
    with pytest.raises(InvalidEmailError, match="longer than 254 characters") as caught:
        normalize_email(_address(255))
    assert caught.value.email.endswith("...")
    assert len(caught.value.email) == 63


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_an_empty_address_says_it_is_empty(raw: str) -> None:
    with pytest.raises(InvalidEmailError, match="the address is empty"):
        normalize_email(raw)
