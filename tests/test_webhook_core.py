"""The pure parts of outgoing webhooks: URL and address rules, signatures, retry times."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import timedelta

import pytest

from newsletter.errors import WebhookError, WebhookURLError
from newsletter.webhooks.catalog import EVENT_TYPES, PING, check_event_types
from newsletter.webhooks.retries import RETRY_PERIOD, next_attempt
from newsletter.webhooks.signing import HEADER, signature, signature_header
from newsletter.webhooks.targets import (
    forbidden_reason,
    is_forbidden,
    literal_address,
    parse_target,
)
from tests.conftest import NOW


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:93.184.216.34", False),
        # multicast behind an IPv4-mapped address: only the IPv4 reading sees it
        ("::ffff:224.0.0.1", True),
    ],
)
def test_only_public_addresses_are_allowed(address: str, forbidden: bool) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is forbidden


def test_every_address_of_a_name_counts() -> None:
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.1")
    assert forbidden_reason("h.example", [public]) is None
    assert "10.0.0.1" in (forbidden_reason("h.example", [public, private]) or "")
    assert "does not resolve" in (forbidden_reason("h.example", []) or "")


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://Shop.Example/h", "shop.example", 443),
        ("http://shop.example:8080/h?x=1", "shop.example", 8080),
        ("http://[::1]:9/h", "::1", 9),
        ("http://shop.example/h", "shop.example", 80),
    ],
)
def test_good_urls_parse(url: str, host: str, port: int) -> None:
    target = parse_target(url)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example",
        "https://",
        "https://u:p@x.example",
        "https://x.example/#f",
        "https://x.example/a b",
        "http://x.example:99999/",
        "x" * 2001,
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookURLError):
        parse_target(url)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"whsec_k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature("whsec_k", 1700000000, b"{}") == expected
    header = signature_header(["new", "old"], 5, b"b")
    assert header == f"t=5,v1={signature('new', 5, b'b')},v1={signature('old', 5, b'b')}"
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], 5, b"b")


def test_the_signature_header_name_is_the_one_receivers_were_told() -> None:
    """Receivers look the header up by this name (README, outgoing webhooks): pinned."""
    assert HEADER == "Newsletter-Signature"


def test_retries_back_off_and_stop_after_three_days() -> None:
    high = lambda low, top: top  # noqa: E731 - the jitter source, as a table value
    low = lambda low, top: low  # noqa: E731
    assert next_attempt(1, first_attempt_at=NOW, now=NOW, uniform=high) == NOW + timedelta(
        minutes=1
    )
    assert next_attempt(1, first_attempt_at=NOW, now=NOW, uniform=low) == NOW + timedelta(
        seconds=30
    )
    later = NOW + timedelta(minutes=7)
    assert next_attempt(4, first_attempt_at=NOW, now=later, uniform=high) == later + timedelta(
        minutes=8
    )
    near = NOW + RETRY_PERIOD - timedelta(minutes=1)
    assert next_attempt(15, first_attempt_at=NOW, now=near, uniform=high) == NOW + RETRY_PERIOD
    assert next_attempt(16, first_attempt_at=NOW, now=NOW + RETRY_PERIOD, uniform=high) is None


def test_event_names_are_checked() -> None:
    assert check_event_types(["*"]) == list(EVENT_TYPES)
    assert check_event_types([" Email.Sent", "email.sent"]) == ["email.sent"]
    with pytest.raises(WebhookError, match="unknown event 'nope'"):
        check_event_types(["nope"])
    with pytest.raises(WebhookError, match="at least one"):
        check_event_types([])


def test_url_edges() -> None:
    """Boundaries the mutation pass found untested."""
    assert parse_target("http://x.example/h").port == 80
    long_ok = "https://x.example/" + "a" * (2000 - len("https://x.example/"))
    assert parse_target(long_ok).url == long_ok
    with pytest.raises(WebhookURLError) as too_long:
        parse_target(long_ok + "a")
    assert str(too_long.value) == (
        f"webhook URL {long_ok[:80] + '...'!r} refused: longer than 2000 characters"
    )
    with pytest.raises(WebhookURLError, match="control characters"):
        parse_target("https://x.example/\x1f")
    with pytest.raises(WebhookURLError) as user_only:
        parse_target("https://u@x.example/a@b")
    assert user_only.value.url == "x.example/a@b"
    assert timedelta(days=3) == RETRY_PERIOD


def test_the_ping_event_has_its_own_name_no_endpoint_subscribes_to() -> None:
    # ``webhook test`` sends it; receivers match on this exact name.
    assert PING == "ping"
    with pytest.raises(WebhookError, match="unknown event 'ping'"):
        check_event_types(["ping"])


def test_a_literal_address_is_read_and_a_name_is_not() -> None:
    assert literal_address("10.0.0.1") == ipaddress.IPv4Address("10.0.0.1")
    assert literal_address("::1") == ipaddress.IPv6Address("::1")
    assert literal_address("shop.example") is None
    assert literal_address("10.0.0") is None


@pytest.mark.parametrize(
    "character", ["\x01", "\x7f", "\x85", "\u200b", "\u202e", "\u2028", "\u00a0", "\u3000"]
)
def test_a_control_format_or_space_character_is_refused(character: str) -> None:
    """C0 and C1 controls, DEL, zero-width and bidi format characters, separators and
    non-ASCII spaces: refused, wherever they stand."""
    for url in (f"https://x.exa{character}mple/", f"https://x.example/{character}"):
        with pytest.raises(WebhookURLError, match="control characters"):
            parse_target(url)
