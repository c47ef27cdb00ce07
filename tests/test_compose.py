"""The unsubscribe link names its email with ``?d=``; reading ``d`` back trusts nothing."""

from __future__ import annotations

import pytest

from newsletter.compose import read_delivery_param, unsubscribe_url


@pytest.mark.parametrize(
    ("delivery_id", "expected"),
    [
        pytest.param(None, "https://news.example/unsubscribe/tok", id="no-delivery"),
        pytest.param(42, "https://news.example/unsubscribe/tok?d=42", id="delivery"),
    ],
)
def test_unsubscribe_url(delivery_id: int | None, expected: str) -> None:
    assert unsubscribe_url("https://news.example", "tok", delivery_id=delivery_id) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("42", 42, id="integer"),
        pytest.param("007", 7, id="leading-zeros"),
        pytest.param(str(2**63 - 1), 2**63 - 1, id="largest-bigint"),
        pytest.param(None, None, id="missing"),
        pytest.param("", None, id="empty"),
        pytest.param("0", None, id="zero"),
        pytest.param("-3", None, id="negative"),
        pytest.param("+3", None, id="plus-sign"),
        pytest.param(" 3", None, id="space"),
        pytest.param("3.0", None, id="decimal"),
        pytest.param("0x10", None, id="hex"),
        pytest.param("1_000", None, id="underscore"),
        pytest.param("\u0663", None, id="arabic-indic-digit"),
        pytest.param(str(2**63), None, id="past-bigint"),
        pytest.param("9" * 400, None, id="huge"),
        pytest.param('"><script>', None, id="markup"),
    ],
)
def test_read_delivery_param(value: str | None, expected: int | None) -> None:
    assert read_delivery_param(value) == expected
