"""``sources.yaml`` parsing, the pure decision core and the bounded JSON parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.sources.config import SourceConfig, parse_sources
from newsletter.sources.decide import read_delivery
from newsletter.sources.fields import email_in, first_name_in, flat, normalized
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


def test_an_exact_first_name_label_needs_no_full_name() -> None:
    # "first" and "fname" hold no "firstname" and no "name": only the exact labels find them
    assert first_name_in([("first", "Ann"), ("email", "a@x.io")]) == "Ann"
    assert first_name_in([("FNAME", " Bo ")]) == "Bo"


def test_a_first_name_question_wins_over_other_names() -> None:
    pairs = [("Pet name", "Rex"), ("Your first name, please", "Ann Lee")]
    assert first_name_in(pairs) == "Ann"
    assert first_name_in([("Pet name", "Rex Dog")]) == "Rex"


def test_labels_and_values_may_come_as_a_one_pass_iterator() -> None:
    assert email_in(iter([("Name", "Ann"), ("Work email", "a@x.io")])) == "a@x.io"
    assert first_name_in(iter([("email", "a@x.io"), ("What's your first name?", "Ann")])) == "Ann"
    assert first_name_in(iter([("Contact name", "Ann Lee")])) == "Ann"


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


def _one(settings: str, name: str = "x") -> tuple[dict[str, SourceConfig], list[str]]:
    text = f"sources:\n  {name}:\n" + "".join(f"    {line}\n" for line in settings.split("; "))
    sources, problems = parse_sources(text, "s.yaml")
    return dict(sources), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("value", "kept"),
    [("1024", 1024), ("8388608", 8388608), ("4096", 4096)],
)
def test_max_body_bytes_within_the_bounds_is_kept(value: str, kept: int) -> None:
    sources, problems = _one(f"preset: tally; secret_env: A; max_body_bytes: {value}")
    assert problems == []
    assert sources["x"].max_body_bytes == kept


@pytest.mark.parametrize("value", ["1023", "8388609", "true", "'4096'", "4096.0"])
def test_max_body_bytes_outside_the_bounds_is_a_problem(value: str) -> None:
    sources, problems = _one(f"preset: tally; secret_env: A; max_body_bytes: {value}")
    assert sources == {}
    assert problems == ["s.yaml:5: x: max_body_bytes must be a number from 1024 to 8388608"]


def test_a_rate_of_several_limits_is_kept_as_written() -> None:
    sources, problems = _one("preset: tally; secret_env: A; rate_limit: 10/minute;100/day")
    assert (problems, sources["x"].rate_limit) == ([], "10/minute;100/day")


def test_every_setting_is_kept_as_written() -> None:
    sources, problems = _one(
        "preset: generic; secret_env: SITE_SECRET; verify: token; rate_limit: 10/second; "
        "tags: [' vip ', shop]; map: {email: 'data.mail', first_name: 'data.n'}",
        name="my-site",
    )
    assert problems == []
    site = sources["my-site"]
    assert (site.verify, site.rate_limit, site.tags, site.secret_env) == (
        "token",
        "10/second",
        ("vip", "shop"),
        "SITE_SECRET",
    )
    assert site.map == {"email": "data.mail", "first_name": "data.n"}
    assert not site.single_opt_in_allowed
    assert site.consent_text is None
    shop, _ = _one(
        "preset: stripe; secret_env: A; opt_in: single_if_consent; consent_text: ' Yes '"
    )
    assert shop["x"].single_opt_in_allowed
    assert shop["x"].consent_text == "Yes"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            "preset: tally",
            "s.yaml:2: x: secret_env must name an environment variable (e.g. "
            "NEWSLETTER_SOURCE_MY_SHOP_SECRET) holding the secret",
        ),
        (
            "preset: tally; secret_env: A; consent_text: '  '",
            "s.yaml:5: x: consent_text must be the wording shown",
        ),
        (
            "preset: tally; secret_env: A; consent_text: 5",
            "s.yaml:5: x: consent_text must be the wording shown",
        ),
        (
            "preset: tally; secret_env: A; tags: [a, '']",
            "s.yaml:5: x: tags must be a list of words, e.g. [customers]",
        ),
        (
            "preset: tally; secret_env: A; tags: 5",
            "s.yaml:5: x: tags must be a list of words, e.g. [customers]",
        ),
        (
            "preset: nope; opt_in: single_if_consent",
            "s.yaml:3: x: preset 'nope' is unknown; use one of webflow, tally, typeform, "
            "formspree, framer, jotform, shopify, woocommerce, stripe, generic",
        ),
        (
            "preset: tally; secret_env: A; tags: [a, 3]",
            "s.yaml:5: x: tags must be a list of words, e.g. [customers]",
        ),
        (
            "preset: generic; secret_env: A; verify: sometimes",
            "s.yaml:5: x: verify: token is for the generic "
            "preset only (others use the sender's own scheme); got 'sometimes'",
        ),
        (
            "preset: generic; secret_env: A; map: [email]",
            "s.yaml:5: x: map must map field names to JMESPath strings",
        ),
        (
            "preset: generic; secret_env: A; map: {email: 3}",
            "s.yaml:5: x: map must map field names to JMESPath strings",
        ),
        (
            "preset: tally; secret_env: A; opt_in: 3",
            "s.yaml:5: x: opt_in must be 'double' or 'single_if_consent', got 3",
        ),
        (
            "preset: tally; secret_env: A; rate_limit: 5",
            "s.yaml:5: x: rate_limit 5 must look like 120/minute "
            "(or several limits: 10/minute;100/day)",
        ),
        (
            "preset: tally; secret_env: A; rate_limit: 10/minute;nonsense",
            "s.yaml:5: x: rate_limit '10/minute;nonsense' must look like 120/minute "
            "(or several limits: 10/minute;100/day)",
        ),
    ],
)
def test_each_problem_names_its_line_and_the_fix(settings: str, problem: str) -> None:
    name = "my-shop" if "MY_SHOP" in problem else "x"
    sources, problems = _one(settings, name=name)
    assert sources == {}
    assert problems == [problem.replace("x: secret_env", f"{name}: secret_env")]


def test_unknown_keys_list_the_known_ones() -> None:
    _, problems = _one("preset: tally; secret_env: A; colour: red; b: 1")
    known = (
        "consent_text, map, max_body_bytes, opt_in, preset, rate_limit, secret_env, tags, verify"
    )
    assert problems == [
        f"s.yaml:6: x: unknown key 'b'; known: {known}",
        f"s.yaml:5: x: unknown key 'colour'; known: {known}",
    ]


def test_single_if_consent_on_a_preset_without_consent_names_the_ones_with() -> None:
    _, problems = _one(
        "preset: tally; secret_env: A; opt_in: single_if_consent; consent_text: Email me"
    )
    assert len(problems) == 1
    assert problems[0].startswith("s.yaml:5: x: single_if_consent is only for signed checkout ")
    assert "(shopify, stripe); tally stays double opt-in" in problems[0]


def test_a_bad_source_does_not_hide_the_good_ones() -> None:
    text = (
        "sources:\n"
        "  a: {preset: tally, secret_env: A}\n"
        "  b: {preset: tally}\n"
        "  c: tally\n"
        "  a: {preset: stripe, secret_env: B}\n"
        "  d: {preset: stripe, secret_env: D}\n"
    )
    sources, problems = parse_sources(text, "s.yaml")
    assert list(sources) == ["a", "d"]
    assert sources["a"].preset == "tally"
    assert (sources["a"].line, sources["d"].line) == (2, 6)
    assert [str(p).split(": ", 1)[0] for p in problems] == ["s.yaml:3", "s.yaml:4", "s.yaml:5"]
    assert "source 'c' must be a mapping with at least 'preset:'" in str(problems[1])
    assert "source 'a' is defined twice" in str(problems[2])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hello\n", "s.yaml:1: the file must hold one key, 'sources:', mapping names to sources"),
        (
            "sources: {}\nother: 1\n",
            "s.yaml:1: the file must hold one key, 'sources:', mapping names to sources",
        ),
        ("sources:\n", "s.yaml:1: 'sources:' must map each source name to its settings"),
    ],
)
def test_the_shape_of_the_file(text: str, problem: str) -> None:
    assert [str(p) for p in parse_sources(text, "s.yaml")[1]] == [problem]


def test_a_source_built_by_hand_has_the_documented_defaults() -> None:
    source = SourceConfig(name="x", preset="tally", secret_env="A")
    assert (source.opt_in, source.tags, source.consent_text, source.map, source.verify) == (
        "double",
        (),
        None,
        {},
        "signature",
    )
    assert (source.rate_limit, source.max_body_bytes, source.line) == ("120/minute", 262144, 0)
    assert not source.single_opt_in_allowed


def test_an_unknown_key_is_reported_at_the_key_not_its_value() -> None:
    text = "sources:\n  x:\n    preset: tally\n    secret_env: A\n    colour:\n      - red\n"
    _, problems = parse_sources(text, "s.yaml")
    assert [str(p).split(": ", 1)[0] for p in problems] == ["s.yaml:5"]
