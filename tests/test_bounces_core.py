"""VERP addresses (pure): made from the bounce address, read back only from it."""

from __future__ import annotations

import pytest

from newsletter.bounces.verp import read_verp, verp_address

BOUNCES = "bounces@shop.example"


def test_verp_address() -> None:
    assert verp_address(BOUNCES, 42) == "bounces+42@shop.example"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("bounces+42@shop.example", 42, id="plain"),
        pytest.param("<Bounces+42@Shop.Example>", 42, id="case-and-brackets"),
        pytest.param("rfc822; bounces+7@shop.example", 7, id="dsn-field"),
        pytest.param("bounces+0@shop.example", None, id="zero"),
        pytest.param("bounces+1@shop.example", 1, id="one"),
        pytest.param("bounces+9223372036854775807@shop.example", 2**63 - 1, id="largest"),
        pytest.param("bounces+9223372036854775808@shop.example", None, id="too-big"),
        pytest.param("other+42@shop.example", None, id="other-local"),
        pytest.param("bounces+42@else.example", None, id="other-domain"),
        pytest.param("bounces+x@shop.example", None, id="not-a-number"),
        pytest.param("bounces@shop.example", None, id="no-tag"),
        pytest.param("", None, id="empty"),
    ],
)
def test_read_verp(address: str, expected: int | None) -> None:
    assert read_verp(address, BOUNCES) == expected
