"""``sources.yaml`` parsing, the pure decision core and the bounded JSON parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.sources.config import parse_sources
from newsletter.sources.decide import read_delivery
from newsletter.sources.fields import first_name_in, flat, normalized
from newsletter.sources.safe_json import (
    BodyError,
    check_text,
    nesting_depth,
    parse_json,
    parse_json_object,
)
from newsletter.sources.verify import Inbound, Unauthorized, timestamped, url_token, webflow

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

BAD = [
    ("sources:\n  x: {preset: nope, secret_env: A}\n", 2, "preset 'nope' is unknown"),
    ("sources:\n  x:\n    preset: tally\n", 2, "secret_env must name an environment variable"),
    ("sources:\n  x:\n    preset: tally\n    secret_env: lower\n", 4, "secret_env must name"),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    opt_in: single_if_consent\n",
        5,
        "single_if_consent is only for signed checkout presets",
    ),
    (
        "sources:\n  x:\n    preset: stripe\n    secret_env: A\n    opt_in: single_if_consent\n",
        5,
        "needs consent_text",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    opt_in: maybe\n",
        5,
        "opt_in must be",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    colour: red\n",
        5,
        "unknown key 'colour'",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    tags: VIP\n",
        5,
        "tags must be a list",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    map: {email: a}\n",
        5,
        "map: is for the generic preset",
    ),
    (
        "sources:\n  x:\n    preset: generic\n    secret_env: A\n    map: {email: 'a[['}\n",
        5,
        "not a JMESPath expression",
    ),
    (
        "sources:\n  x:\n    preset: generic\n    secret_env: A\n    map: {first_name: a}\n",
        5,
        "map needs an email",
    ),
    (
        "sources:\n  x:\n    preset: generic\n    secret_env: A\n    map: {email: a, age: b}\n",
        5,
        "map.age is unknown",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    verify: token\n",
        5,
        "verify: token",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    rate_limit: lots\n",
        5,
        "rate_limit",
    ),
    (
        "sources:\n  x:\n    preset: tally\n    secret_env: A\n    max_body_bytes: 5\n",
        5,
        "max_body_bytes",
    ),
    ("sources:\n  Bad Name: {preset: tally, secret_env: A}\n", 2, "must be lower-case"),
    ("sources: [a]\n", 1, "must map each source name"),
    ("other: {}\n", 1, "one key, 'sources:'"),
    ("sources:\n  x: [\n", 3, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_sources_file_names_the_line_and_the_fix(text: str, line: int, words: str) -> None:
    sources, problems = parse_sources(text, "sources.yaml")
    assert sources == {}
    assert problems, "expected a problem"
    assert str(problems[0]).startswith(f"sources.yaml:{line}: "), str(problems[0])
    assert words in str(problems[0])


def test_a_good_sources_file_parses_with_defaults() -> None:
    text = (
        "sources:\n"
        "  shop:\n    preset: shopify\n    secret_env: S\n    opt_in: single_if_consent\n"
        "    consent_text: Email me\n    tags: [customers]\n"
        "  site:\n    preset: generic\n    secret_env: T\n    map: {email: 'a.b'}\n"
    )
    sources, problems = parse_sources(text, "s.yaml")
    assert problems == []
    shop = sources["shop"]
    assert (shop.preset, shop.opt_in, shop.tags, shop.consent_text, shop.line) == (
        "shopify",
        "single_if_consent",
        ("customers",),
        "Email me",
        2,
    )
    assert (shop.rate_limit, shop.max_body_bytes, shop.verify) == (
        "120/minute",
        262144,
        "signature",
    )
    assert sources["site"].map == {"email": "a.b"}
    assert sources["site"].opt_in == "double"


def test_an_empty_file_has_no_sources() -> None:
    assert parse_sources("", "s.yaml") == ({}, [])


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("First Name", "firstname"),
        ("first_name", "firstname"),
        ("E-mail", "email"),
        ("FNAME", "fname"),
    ],
)
def test_labels_are_normalized(label: str, expected: str) -> None:
    assert normalized(label) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Email": "a@x.io", "Name": "Ada Lovelace"}, ("a@x.io", "Ada")),
        ({"Work email": "a@x.io", "First Name": "Ada"}, ("a@x.io", "Ada")),
        ({"email": "  ", "mail": "b@x.io"}, ("b@x.io", None)),
        ({"Company name": "Acme", "Last name": "L", "email": 5}, (None, None)),
        ({}, (None, None)),
    ],
    ids=["name", "work-email", "blank-first", "not-a-person", "empty"],
)
def test_flat_fields_find_email_and_first_name(fields: dict[str, object], expected: tuple) -> None:
    assert flat(fields) == expected


def test_a_question_about_the_first_name_is_found() -> None:
    assert first_name_in([("What's your first name?", "Laura")]) == "Laura"
    assert first_name_in([("Your name please", "Laura Palmer")]) == "Laura"


HOSTILE = [
    ("[" * 40 + "]" * 40, "nested deeper"),
    ('{"n": ' + "1" * 41 + "}", "longer than 40 digits"),
    ('{"a": "\\ud800"}', "lone surrogate"),
    ('{"a": "\\u0000"}', "NUL"),
    ('{"\\u0000": 1}', "NUL"),
    ('["ok", ["\\u0000"]]', "NUL"),
    ('{"a": [{"b": "\\udfff"}]}', "lone surrogate"),
    ('{"a": Infinity}', "not JSON"),
    ("{", "not valid JSON"),
]


@pytest.mark.parametrize(
    ("text", "words"), HOSTILE, ids=[h[1] + str(i) for i, h in enumerate(HOSTILE)]
)
def test_hostile_json_is_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(BodyError, match=words):
        parse_json(text)


def test_bounded_json_still_reads_what_senders_send() -> None:
    assert parse_json('{"a": [1, -' + "9" * 40 + ', "\\u00e9 [{"]}') == {
        "a": [1, -int("9" * 40), "é [{"]
    }
    assert parse_json("[" * 32 + "]" * 32) is not None
    assert nesting_depth('{"a": "[[[[", "b": [[]]}') == 3


def test_our_own_refusals_keep_their_message() -> None:
    with pytest.raises(BodyError, match=r"^the body has an integer longer than 40 digits$"):
        parse_json("[" + "1" * 41 + "]")
    with pytest.raises(BodyError, match=r"^the body uses NaN, which is not JSON$"):
        parse_json("[NaN]")
    with pytest.raises(BodyError, match=r"^the body is not UTF-8$"):
        parse_json(b'{"a": "\xff"}')


def test_check_text_returns_the_text_and_names_what_it_checked() -> None:
    assert check_text("Ann \u00e9") == "Ann \u00e9"
    with pytest.raises(BodyError, match=r"^a form field holds a NUL character"):
        check_text("a\x00", "a form field")


def test_a_json_object_is_required_where_asked() -> None:
    assert parse_json_object(b'{"a": 1}') == {"a": 1}
    for text in ("[1]", '"x"', "1", "null"):
        with pytest.raises(BodyError, match="must be an object"):
            parse_json_object(text)


def test_a_webflow_timestamp_that_is_not_a_number_is_refused() -> None:
    request = Inbound(b"{}", {"x-webflow-timestamp": "soon", "x-webflow-signature": "00"}, {})
    with pytest.raises(Unauthorized, match="millisecond timestamp"):
        webflow(["s"], request, NOW)


@pytest.mark.parametrize("header", ["", "t=1", "v1=00", "t=abc,v1=00", "garbage"])
def test_a_malformed_stripe_header_is_refused(header: str) -> None:
    with pytest.raises(Unauthorized):
        timestamped("Stripe-Signature")(
            ["s"], Inbound(b"{}", {"stripe-signature": header}, {}), NOW
        )


def test_a_url_token_compares_against_every_secret() -> None:
    url_token(["new", "old"], Inbound(b"", {}, {"token": "old"}), NOW)
    with pytest.raises(Unauthorized, match="missing"):
        url_token(["new"], Inbound(b"", {}, {}), NOW)


def test_an_invalid_email_from_a_sender_is_ignored_not_refused() -> None:
    sources, _ = parse_sources("sources:\n  f: {preset: framer, secret_env: A}\n", "s")
    verdict = read_delivery(sources["f"], Inbound(b'{"email": "not an address"}', {}, {}))
    assert verdict.action == "ignore"
    assert "not valid" in verdict.reason


def test_single_opt_in_needs_the_setting_and_the_senders_consent() -> None:
    text = (
        "sources:\n"
        "  s: {preset: stripe, secret_env: A, opt_in: single_if_consent, consent_text: t}\n"
        "  d: {preset: stripe, secret_env: A}\n"
    )
    sources, _ = parse_sources(text, "s")
    body = (
        b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": '
        b'{"consent": {"promotions": "opt_in"}, "customer_details": {"email": "j@example.com"}}}}'
    )
    single = read_delivery(sources["s"], Inbound(body, {}, {}))
    double = read_delivery(sources["d"], Inbound(body, {}, {}))
    assert (single.action, single.single_opt_in, single.consent_text) == ("subscribe", True, "t")
    assert (double.action, double.single_opt_in) == ("subscribe", False)
