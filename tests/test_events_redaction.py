"""``redact_address``: one address out of a raw SendGrid body, in any spelling JSON allows,
everyone else's events untouched (pure, table-driven)."""

from __future__ import annotations

import json

import pytest

from newsletter.events.parsing import parse_batch
from newsletter.events.redaction import address_spellings, redact_address

ANN = "ann@example.org"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"[1,", b"[1,", id="unparseable-without-it"),
        pytest.param(b'[{"email":"ANN@example.ORG",', b'[{"email":"<redacted>",', id="mixed-case"),
        pytest.param(b'["ann\\u0040example.org"', b'["<redacted>"', id="escaped-at"),
        pytest.param(b'["\\u0041nn\\u0040ex', b'["\\u0041nn\\u0040ex', id="a-prefix-only"),
        pytest.param(
            b'["\\u0041NN\\u0040EXAMPLE\\u002eorg" ann@example.org',
            b'["<redacted>" <redacted>',
            id="escaped-upper-letters-and-dot-twice",
        ),
        pytest.param(b'["\\u006E\\u006enn@', b'["\\u006E\\u006enn@', id="not-quite"),
        pytest.param(
            b'["\\u0061\\u006E\\u006E@example.org" x',
            b'["<redacted>" x',
            id="every-letter-escaped-hex-mixed",
        ),
        pytest.param(b"joann@example.org,", b"jo<redacted>,", id="unparseable-blanks-longer"),
        pytest.param(b"ann@example.orga", b"<redacted>a", id="unparseable-no-boundaries"),
    ],
)
def test_bytes_that_do_not_parse_lose_every_spelling(body: bytes, expected: bytes) -> None:
    assert redact_address(body, ANN) == expected


def test_a_body_that_never_names_the_address_is_returned_as_is() -> None:
    body = b'[ {"email": "bob@example.org", "event": "open"} ]'
    assert redact_address(body, ANN) is body


def test_a_parsed_body_loses_the_address_and_keeps_everyone_else() -> None:
    """Ann's events lose email, IP and user agent; her address leaves every other string
    (keys too, nested too); Jo's address, which contains Ann's, is hers and stays."""
    events = [
        {
            "email": " Ann@Example.org ",
            "event": "open",
            "timestamp": 1795000000,
            "ip": "1.2.3.4",
            "useragent": "UA",
            "sg_message_id": "m1.f",
        },
        {
            "email": "joann@example.org",
            "event": "bounce",
            "timestamp": 1795000000,
            "reason": "550 to ANN@example.org and joann@example.org",
            "sg_message_id": "m2.f",
            "ip": "5.6.7.8",
            "nested": [{"ann@example.org": ["ann@example.org"]}],
            "n": 1.5,
        },
    ]
    redacted = redact_address(json.dumps(events).encode(), ANN)
    assert json.loads(redacted) == [
        {"event": "open", "timestamp": 1795000000, "sg_message_id": "m1.f"},
        {"email": "joann@example.org", "event": "bounce", "timestamp": 1795000000,
         "reason": "550 to <redacted> and jo<redacted>", "sg_message_id": "m2.f",
         "ip": "5.6.7.8", "nested": [{"<redacted>": ["<redacted>"]}], "n": 1.5},
    ]  # fmt: skip
    assert redacted.isascii()
    before = parse_batch(json.dumps(events).encode()).events[1]
    after = parse_batch(redacted).events[1]
    assert (after.logical_key, after.email_hash, after.event) == (
        before.logical_key,
        before.email_hash,
        before.event,
    )


def test_a_parsed_body_keeps_values_that_only_the_drain_cleans() -> None:
    """NaN, a long float, an escaped lone surrogate: written back so that ``parse_batch``
    reads the same events as from the original."""
    body = (
        b'[{"email":"ann@example.org","event":"open","timestamp":1795000000},'
        b'{"email":"b@example.org","event":"open","timestamp":1795000000,"x":NaN,'
        b'"y":1e999,"z":"\\ud800","w":0.1}]'
    )
    redacted = redact_address(body, ANN)
    assert b"ann" not in redacted.lower()
    assert parse_batch(redacted).events[1] == parse_batch(body).events[1]


def test_a_non_ascii_domain_is_also_found_in_its_ascii_form() -> None:
    email = "jürgen@bücher.example"
    assert address_spellings(email) == [email, "jürgen@xn--bcher-kva.example"]
    body = (
        '["JÜRGEN@bücher.example" "jürgen@XN--BCHER-KVA.example" '
        '"j\\u00DCrgen@b\\u00fccher.example"'
    )
    assert redact_address(body.encode(), email) == b'["<redacted>" "<redacted>" "<redacted>"'
    assert address_spellings(ANN) == [ANN]


def test_a_character_beyond_the_bmp_is_found_as_its_escaped_surrogate_pair() -> None:
    email = "\U0001f600@example.org"
    body = '[ "\\ud83d\\uDE00@example.org", "\U0001f600@example.org" '.encode()
    assert redact_address(body, email) == b'[ "<redacted>", "<redacted>" '


def test_a_slash_is_found_escaped() -> None:
    assert redact_address(b'["a\\/b@example.org",', "a/b@example.org") == b'["<redacted>",'


def test_an_unspellable_idn_domain_is_looked_for_as_given() -> None:
    email = "x@a\u200db.example"  # a joiner IDNA refuses here
    assert address_spellings(email) == [email]


@pytest.mark.parametrize(
    ("email", "body"),
    [
        pytest.param("\uffff@x.example", b'["\\uFFFF@x.example"', id="last-bmp"),
        pytest.param("\U00010000@x.example", b'["\\ud800\\uDC00@x.example"', id="first-astral"),
        pytest.param("stra\u00dfe@x.example", '["STRAßE@x.example"'.encode(), id="upper-is-longer"),
    ],
)
def test_escapes_at_the_edges_of_the_bmp_and_case_changes_that_add_letters(
    email: str, body: bytes
) -> None:
    """U+FFFF is one escape, U+10000 a pair; ß, whose upper case is "SS", is matched as ß."""
    assert redact_address(body, email) == b'["<redacted>"'
