"""Each preset over its sender's documented sample, and each verifier, without HTTP (fast)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from newsletter.sources.config import parse_sources
from newsletter.sources.decide import check_authentic, is_activation_ping, read_delivery
from newsletter.sources.presets import PRESETS
from newsletter.sources.safe_json import BodyError
from newsletter.sources.verify import Inbound, Unauthorized
from tests.conftest import NOW
from tests.source_senders import sample, signature_headers

SECRETS = ("new-secret", "old-secret")
TEXT = "sources:\n" + "".join(
    f"  {p}: {{preset: {p}, secret_env: S"
    + (", opt_in: single_if_consent, consent_text: Email me" if PRESETS[p].consent_flag else "")
    + "}\n"
    for p in PRESETS
)
SOURCES, _problems = parse_sources(TEXT, "s.yaml")

EXPECTED = {
    "webflow": ("zaphod@heartofgold.ai", "Zaphod", "6321ca84df3949bfc6752327", None, False),
    "tally": ("alice@example.com", "Alice", "a4cb511e-d513-4fa5-baee-b815d718dfd1", None, False),
    "typeform": ("laura@example.com", "Laura", "01GKJ1N7S8QKYYB4FBX3E2YMV3", None, False),
    "formspree": ("ada@example.com", "Ada", "mqkrrqgo:2021-04-07T15:04:35.744Z", None, False),
    "framer": ("grace@example.com", "Grace", "0fbbb90e-564b-4870-ac8b-78f9bc4e44a6", None, False),
    "jotform": ("katherine@example.com", "Katherine", "5712345678901234567", "203.0.113.7", False),
    "shopify": ("bob@biller.com", "Bob", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", None, True),
    "woocommerce": ("john.doe@example.com", "John", "order.created:727", "198.51.100.23", False),
    "stripe": ("jenny.rosen@example.com", "Jenny", "evt_1Ep24XHssDVaQm2PpwS19Yt0", None, True),
}


def inbound(preset: str, payload: Any = None, *, secret: str = SECRETS[0], **kw: Any) -> Inbound:
    body = json.dumps(sample(preset) if payload is None else payload).encode()
    headers, query = signature_headers(preset, body, secret, kw.pop("now", NOW), **kw)
    return Inbound(body, {k.lower(): v for k, v in headers.items()}, query)


def fields_of(preset: str, request: Inbound) -> dict[str, Any] | None:
    return json.loads(request.body) if PRESETS[preset].body == "form" else None


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_the_documented_sample_maps_and_decides(preset: str) -> None:
    request = inbound(preset)
    verdict = read_delivery(SOURCES[preset], request, fields_of(preset, request))
    assert verdict.action == "subscribe", verdict.reason
    assert verdict.signup is not None
    signup = verdict.signup
    email, first_name, event_id, ip, single = EXPECTED[preset]
    assert (signup.email, signup.first_name, signup.event_id, signup.ip) == (
        email,
        first_name,
        event_id,
        ip,
    )
    assert verdict.single_opt_in is single
    assert verdict.consent_text == ("Email me" if single else None)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_secret_of_a_rotation_verifies_and_no_other(preset: str) -> None:
    for secret in SECRETS:
        check_authentic(SOURCES[preset], inbound(preset, secret=secret), secrets=SECRETS, now=NOW)
    with pytest.raises(Unauthorized):
        check_authentic(SOURCES[preset], inbound(preset, secret="x"), secrets=SECRETS, now=NOW)
    with pytest.raises(Unauthorized, match="no secret"):
        check_authentic(SOURCES[preset], inbound(preset), secrets=(), now=NOW)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "jotform"])
def test_a_changed_body_does_not_verify(preset: str) -> None:
    request = inbound(preset)
    changed = Inbound(request.body.replace(b"@", b"+x@", 1), request.headers, request.query)
    with pytest.raises(Unauthorized):
        check_authentic(SOURCES[preset], changed, secrets=SECRETS, now=NOW)


@pytest.mark.parametrize("preset", ["webflow", "formspree", "stripe"])
@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (timedelta(seconds=299), True),
        (timedelta(seconds=-299), True),
        (timedelta(seconds=301), False),
        (timedelta(seconds=-301), False),
    ],
)
def test_the_timestamp_window_is_five_minutes(preset: str, offset: timedelta, ok: bool) -> None:
    request = inbound(preset, now=NOW + offset)
    if ok:
        check_authentic(SOURCES[preset], request, secrets=SECRETS, now=NOW)
    else:
        with pytest.raises(Unauthorized, match="timestamp"):
            check_authentic(SOURCES[preset], request, secrets=SECRETS, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "typeform-signature",
        "framer-signature",
        "framer-webhook-submission-id",
        "x-shopify-hmac-sha256",
        "tally-signature",
        "x-webflow-timestamp",
    ],
)
def test_a_missing_header_does_not_verify(header: str) -> None:
    preset = {
        "typeform-signature": "typeform",
        "framer-signature": "framer",
        "framer-webhook-submission-id": "framer",
        "x-shopify-hmac-sha256": "shopify",
        "tally-signature": "tally",
        "x-webflow-timestamp": "webflow",
    }[header]
    request = inbound(preset)
    headers = {k: v for k, v in request.headers.items() if k != header}
    with pytest.raises(Unauthorized, match="missing"):
        check_authentic(
            SOURCES[preset], Inbound(request.body, headers, {}), secrets=SECRETS, now=NOW
        )


def test_a_typeform_signature_without_its_prefix_does_not_verify() -> None:
    request = inbound("typeform")
    headers = dict(request.headers)
    headers["typeform-signature"] = headers["typeform-signature"].removeprefix("sha256=")
    with pytest.raises(Unauthorized, match="must start with"):
        check_authentic(
            SOURCES["typeform"], Inbound(request.body, headers, {}), secrets=SECRETS, now=NOW
        )


def _stripe(consent: Any, kind: str = "checkout.session.completed") -> dict[str, Any]:
    event = sample("stripe")
    event["type"] = kind
    event["data"]["object"]["consent"] = consent
    return event


@pytest.mark.parametrize(
    ("preset", "payload", "topic", "reason"),
    [
        ("stripe", _stripe({"promotions": "opt_out"}), None, "'opt_out', not 'opt_in'"),
        ("stripe", _stripe(None), None, "None, not 'opt_in'"),
        ("stripe", _stripe({"promotions": "opt_in"}, "invoice.paid"), None, "not checkout.session"),
        ("shopify", sample("shopify") | {"email_marketing_consent": None}, None, "None"),
        ("shopify", sample("shopify"), "customers/delete", "not a customer or order creation"),
        ("woocommerce", sample("woocommerce") | {"billing": {}}, None, "billing.email"),
        ("tally", sample("tally") | {"eventType": "OTHER"}, None, "not FORM_RESPONSE"),
        ("typeform", sample("typeform") | {"event_type": "ping"}, None, "not form_response"),
        ("webflow", {"triggerType": "form_submission", "payload": {}}, None, "payload.data"),
        ("framer", {"Email": "not an address"}, None, "not valid"),
    ],
    ids=[
        "stripe-opt-out",
        "stripe-no-consent",
        "stripe-other-event",
        "shopify-no-consent",
        "shopify-other-topic",
        "woo-no-email",
        "tally-other",
        "typeform-other",
        "webflow-no-data",
        "framer-bad-email",
    ],
)
def test_what_is_ignored_and_why(preset: str, payload: Any, topic: str | None, reason: str) -> None:
    request = inbound(preset, payload, topic=topic)
    verdict = read_delivery(SOURCES[preset], request)
    assert verdict.action == "ignore"
    assert reason in verdict.reason
    assert verdict.signup is None


def test_shopify_without_single_opt_in_setting_stays_double() -> None:
    sources, _ = parse_sources("sources:\n  s: {preset: shopify, secret_env: S}\n", "s")
    verdict = read_delivery(sources["s"], inbound("shopify"))
    assert (verdict.action, verdict.single_opt_in) == ("subscribe", False)


def test_the_woocommerce_ping_is_recognised_only_for_woocommerce() -> None:
    ping = Inbound(b"webhook_id=15", {}, {})
    assert is_activation_ping(SOURCES["woocommerce"], ping)
    assert not is_activation_ping(SOURCES["generic"], ping)
    assert not is_activation_ping(SOURCES["woocommerce"], Inbound(b"webhook_id=15&x=1", {}, {}))


def test_generic_without_a_map_reads_flat_fields() -> None:
    verdict = read_delivery(
        SOURCES["generic"], Inbound(b'{"email": "a@example.com", "name": "A B"}', {}, {})
    )
    assert verdict.signup is not None
    assert (verdict.signup.email, verdict.signup.first_name) == ("a@example.com", "A")


def test_sender_tags_are_never_part_of_a_verdict() -> None:
    verdict = read_delivery(SOURCES["shopify"], inbound("shopify"))
    assert verdict.tags == ()  # the shop's "VIP, wholesale" is not copied


def test_a_signature_that_is_not_base64_is_named_so() -> None:
    request = inbound("tally")
    headers = dict(request.headers) | {"tally-signature": "not base64!!"}
    with pytest.raises(Unauthorized, match="not base64"):
        check_authentic(
            SOURCES["tally"], Inbound(request.body, headers, {}), secrets=SECRETS, now=NOW
        )


@pytest.mark.parametrize("preset", ["webflow", "stripe"])
def test_exactly_five_minutes_old_still_verifies(preset: str) -> None:
    request = inbound(preset, now=NOW - timedelta(seconds=300))
    check_authentic(SOURCES[preset], request, secrets=SECRETS, now=NOW)


@pytest.mark.parametrize(
    ("preset", "header", "value", "words"),
    [
        ("webflow", "x-webflow-timestamp", "1" * 17, "not a millisecond timestamp"),
        ("webflow", "x-webflow-timestamp", "1" * 16, "timestamp is more than"),
        ("stripe", "stripe-signature", "t=" + "1" * 13 + ",v1=00", "must look like"),
        ("stripe", "stripe-signature", "t=" + "1" * 12 + ",v1=00", "timestamp is more than"),
    ],
)
def test_timestamp_lengths_are_bounded(preset: str, header: str, value: str, words: str) -> None:
    request = inbound(preset)
    headers = dict(request.headers) | {header: value}
    with pytest.raises(Unauthorized, match=words):
        check_authentic(
            SOURCES[preset], Inbound(request.body, headers, {}), secrets=SECRETS, now=NOW
        )


def test_nesting_is_counted_after_closed_siblings() -> None:
    from newsletter.sources.safe_json import parse_json

    with pytest.raises(BodyError, match="nested deeper"):
        parse_json("[[], " + "[" * 32 + "]" * 32 + "]")
    with pytest.raises(BodyError, match="nested deeper"):
        parse_json("[" * 33 + "]" * 33)


def test_a_verdict_as_a_dict_shows_fields_only_when_subscribing() -> None:
    accepted = read_delivery(SOURCES["stripe"], inbound("stripe")).as_dict()
    assert accepted["opt_in"] == "single"
    assert accepted["fields"]["email"] == "jenny.rosen@example.com"
    assert accepted["event_id"] == "evt_1Ep24XHssDVaQm2PpwS19Yt0"
    ignored = read_delivery(SOURCES["stripe"], inbound("stripe", _stripe(None))).as_dict()
    assert set(ignored) == {"source", "action", "reason"}


def test_form_fields_are_used_only_by_form_presets() -> None:
    jot = sample("jotform")
    as_json = read_delivery(SOURCES["jotform"], Inbound(json.dumps(jot).encode(), {}, {}), None)
    assert as_json.signup is not None
    assert as_json.signup.email == "katherine@example.com"
    generic = read_delivery(
        SOURCES["generic"],
        Inbound(b'{"email": "body@example.com"}', {}, {}),
        {"email": "fields@example.com"},
    )
    assert generic.signup is not None
    assert generic.signup.email == "body@example.com"


def test_a_verdict_as_a_dict_in_full() -> None:
    sources, _ = parse_sources(
        "sources:\n  s: {preset: stripe, secret_env: S, opt_in: single_if_consent, "
        "consent_text: ' Email me ', tags: [buyers, ' eu ']}\n",
        "s.yaml",
    )
    verdict = read_delivery(sources["s"], inbound("stripe"))
    assert verdict.as_dict() == {
        "source": "s",
        "action": "subscribe",
        "reason": "single opt-in: the sender reports the subscriber's marketing consent",
        "fields": {
            "email": "jenny.rosen@example.com",
            "first_name": "Jenny",
            "timezone": None,
            "ip": None,
        },
        "event_id": "evt_1Ep24XHssDVaQm2PpwS19Yt0",
        "opt_in": "single",
        "consent_text": "Email me",
        "tags": ["buyers", "eu"],
    }
    double = read_delivery(SOURCES["tally"], inbound("tally")).as_dict()
    assert (double["opt_in"], double["consent_text"], double["tags"]) == ("double", None, [])
    assert double["reason"] == "double opt-in: a confirmation email asks the subscriber"


def test_an_ignored_delivery_is_never_single_opt_in() -> None:
    ping = read_delivery(SOURCES["woocommerce"], Inbound(b" webhook_id=15\n", {}, {}))
    assert (ping.action, ping.reason, ping.single_opt_in, ping.signup) == (
        "ignore",
        "WooCommerce activation ping",
        False,
        None,
    )
    assert ping.as_dict() == {
        "source": "woocommerce",
        "action": "ignore",
        "reason": "WooCommerce activation ping",
    }
    ignored = read_delivery(SOURCES["stripe"], inbound("stripe", _stripe(None)))
    assert (ignored.single_opt_in, ignored.consent_text, ignored.tags) == (False, None, ())


def test_a_form_preset_reads_the_fields_the_edge_decoded_not_the_body() -> None:
    fields = {
        "rawRequest": json.dumps({"q3_email": "kat@example.com", "q4_name": {"first": "Kat"}}),
        "submissionID": "77",
        "tags": ["not", "text"],
    }
    form_body = Inbound(b"rawRequest=%7B%7D&submissionID=77", {}, {})
    verdict = read_delivery(SOURCES["jotform"], form_body, fields)
    assert verdict.signup is not None
    assert (verdict.signup.email, verdict.signup.first_name, verdict.signup.event_id) == (
        "kat@example.com",
        "Kat",
        "77",
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"raw\x00Request": "x"}, "^a form field name holds a NUL character or a lone surrogate$"),
        ({"rawRequest": "{}", "ip": "1\x00"}, "^a form field holds a NUL character"),
    ],
)
def test_form_fields_with_a_nul_are_a_broken_body(fields: dict[str, str], words: str) -> None:
    with pytest.raises(BodyError, match=words):
        read_delivery(SOURCES["jotform"], Inbound(b"x=1", {}, {}), fields)


@pytest.mark.parametrize("body", [b"", b" \r\n "])
def test_an_empty_body_is_named_so(body: bytes) -> None:
    with pytest.raises(BodyError, match=r"^the body is empty; the sender must post JSON$"):
        read_delivery(SOURCES["generic"], Inbound(body, {}, {}))


# ---- each interpreter over small payloads (exact readings) -------------------------------------


def _read(preset: str, data: Any, headers: dict[str, str] | None = None, **mapping: str) -> Any:
    from newsletter.sources.presets import compile_map

    request = Inbound(b"", headers or {}, {})
    return PRESETS[preset].interpret(data, request, compile_map(mapping))


def test_values_in_reasons_are_quoted_and_cut() -> None:
    from newsletter.sources.presets import Ignore

    assert _read("webflow", {"triggerType": "x" * 70}) == Ignore(
        f"Webflow event {'x' * 60!r} is not a form_submission"
    )
    assert _read("tally", {"eventType": ["a"] * 30}) == Ignore(
        f"Tally event {repr(['a'] * 30)[:60]} is not FORM_RESPONSE"
    )
    assert _read("typeform", []) == Ignore("Typeform event None is not form_response")
    assert _read("shopify", {}, {"x-shopify-topic": "t" * 70}) == Ignore(
        f"Shopify topic {'t' * 60!r} is not a customer or order creation"
    )
    assert _read("woocommerce", {}, {"x-wc-webhook-topic": "w" * 70}) == Ignore(
        f"WooCommerce topic {'w' * 60!r} is not order.created"
    )
    state = {"email_marketing_consent": {"state": "s" * 50}}
    assert _read("shopify", state, {"x-shopify-topic": "customers/update"}) == Ignore(
        f"the customer's email_marketing_consent.state is {'s' * 40!r}, not 'subscribed'"
    )
    stripe_event = {
        "type": "checkout.session.completed",
        "data": {"object": {"consent": {"promotions": "p" * 50}}},
    }
    assert _read("stripe", stripe_event) == Ignore(
        f"the session's consent.promotions is {'p' * 40!r}, not 'opt_in'"
    )


def test_webflow_and_framer_and_formspree_read_flat_fields() -> None:
    from newsletter.sources.presets import Ignore, Signup

    webflow = {
        "triggerType": "form_submission",
        "payload": {"id": 12345, "data": {"Email": "w@example.com", "Name": "Wes Lee"}},
    }
    assert _read("webflow", webflow) == Signup("w@example.com", "Wes", event_id="12345")
    assert _read(
        "framer", {"email": "f@example.com"}, {"framer-webhook-submission-id": " s1 "}
    ) == (Signup("f@example.com", None, event_id="s1"))
    assert _read("framer", {"name": "x"}) == Ignore("no email address in the form fields")
    formspree = {"form": "abc", "submission": {"email": "p@example.com", "_date": "d1"}}
    assert _read("formspree", formspree) == Signup("p@example.com", None, event_id="abc:d1")
    undated = {"form": "abc", "submission": {"email": "p@example.com", "_email": "x@y.z"}}
    assert _read("formspree", undated) == Signup("p@example.com", None, event_id=None)
    hidden = {"form": "abc", "submission": {"_replyto": "p@example.com"}}
    assert _read("formspree", hidden) == Ignore("no email address in submission")


def test_tally_prefers_the_typed_email_field() -> None:
    from newsletter.sources.presets import Ignore, Signup

    data = {
        "eventType": "FORM_RESPONSE",
        "eventId": "ev1",
        "data": {
            "fields": [
                {"label": "Email", "type": "INPUT_TEXT", "value": "label@example.com"},
                {"key": "question_x", "type": "INPUT_EMAIL", "value": "  "},
                {"key": "question_y", "type": "INPUT_EMAIL", "value": "typed@example.com"},
                {"label": "First name", "type": "INPUT_TEXT", "value": "Tia"},
                "not a field",
            ]
        },
    }
    assert _read("tally", data) == Signup("typed@example.com", "Tia", event_id="ev1")
    untyped = {"eventType": "FORM_RESPONSE", "data": {"fields": [data["data"]["fields"][0]]}}
    assert _read("tally", untyped) == Signup("label@example.com", None, event_id=None)
    empty = {"eventType": "FORM_RESPONSE", "data": {"fields": None}}
    assert _read("tally", empty) == Ignore("no email address in data.fields")


def test_typeform_reads_typed_answers_titles_and_hidden_fields() -> None:
    from newsletter.sources.presets import Ignore, Signup

    response = {
        "answers": [
            {"type": "text", "text": "Tom Hanks", "field": {"id": "f1"}},
            {"type": "email", "email": "t@example.com", "field": {"id": "f2"}},
            "odd",
        ],
        "definition": {"fields": [{"id": "f1", "title": "What is your first name?"}, "odd"]},
    }
    data = {"event_type": "form_response", "event_id": "E1", "form_response": response}
    assert _read("typeform", data) == Signup("t@example.com", "Tom", event_id="E1")
    by_ref = dict(response, definition={"fields": [{"id": "f1", "ref": "first_name"}]})
    # an exact first-name label keeps its whole value
    assert _read("typeform", dict(data, form_response=by_ref)).first_name == "Tom Hanks"
    hidden = {
        "answers": [{"type": "email", "email": "t@example.com"}],
        "hidden": {"first_name": "Hana"},
    }
    assert _read("typeform", dict(data, form_response=hidden)).first_name == "Hana"
    no_email = {"answers": [{"type": "text", "text": "t@example.com"}]}
    assert _read("typeform", dict(data, form_response=no_email)) == Ignore(
        "no email address in form_response.answers"
    )


def test_jotform_reads_q_labels_and_the_name_widget() -> None:
    from newsletter.sources.presets import Ignore, Signup

    answers = {"q3_yourEmail": "j@example.com", "q4_fullName": {"first": "Jo", "last": "Ng"}}
    fields = {"rawRequest": json.dumps(answers), "submissionID": 99, "ip": "203.0.113.9"}
    assert _read("jotform", fields) == Signup(
        "j@example.com", "Jo", event_id="99", ip="203.0.113.9"
    )
    plain = {"rawRequest": json.dumps({"email": "j@example.com", "q5_name": "Jo Ng"})}
    assert _read("jotform", plain) == Signup("j@example.com", "Jo", event_id=None, ip=None)
    assert _read("jotform", {"rawRequest": "{}"}) == Ignore("no email address in rawRequest")
    with pytest.raises(BodyError, match="carries its answers in the rawRequest field"):
        _read("jotform", {"rawRequest": 5})


def test_shopify_orders_carry_the_browser_ip_and_an_event_id() -> None:
    from newsletter.sources.presets import Ignore, Signup

    order = {
        "id": 820982911946154508,
        "email": "order@example.com",
        "browser_ip": " ",
        "client_details": {"browser_ip": "198.51.100.4"},
        "customer": {"email_marketing_consent": {"state": "subscribed"}, "first_name": "Ola"},
    }
    topic = {"x-shopify-topic": "orders/create"}
    assert _read("shopify", order, topic) == Signup(
        "order@example.com",
        "Ola",
        event_id="orders/create:820982911946154508",
        consent=True,
        ip="198.51.100.4",
    )
    direct = dict(order, browser_ip="192.0.2.1")
    assert _read("shopify", direct, {"x-shopify-topic": "checkouts/create"}).ip == "192.0.2.1"
    customer = {"email": "c@example.com", "email_marketing_consent": {"state": "subscribed"}}
    with_event = {"x-shopify-topic": "customers/create", "x-shopify-event-id": "ev-9"}
    assert _read("shopify", customer, with_event) == Signup(
        "c@example.com", None, event_id="ev-9", consent=True, ip=None
    )
    nobody = {"email_marketing_consent": {"state": "subscribed"}}
    assert _read("shopify", nobody, {"x-shopify-topic": "customers/create"}) == Ignore(
        "no email address in the Shopify customer"
    )


def test_woocommerce_and_stripe_readings() -> None:
    from newsletter.sources.presets import Ignore, Signup

    order = {"billing": {"email": "w@example.com", "first_name": "Wu"}, "customer_ip_address": ""}
    topic = {"x-wc-webhook-topic": "order.created"}
    assert _read("woocommerce", order, topic) == Signup("w@example.com", "Wu", event_id=None)
    assert _read("woocommerce", dict(order, id=True), topic).event_id is None
    session = {
        "consent": {"promotions": "opt_in"},
        "customer_details": {"email": None, "name": "Sam  Stone"},
        "customer_email": "s@example.com",
    }
    event = {"type": "checkout.session.completed", "id": "evt_1", "data": {"object": session}}
    assert _read("stripe", event) == Signup("s@example.com", "Sam", event_id="evt_1", consent=True)
    session_without = dict(session, customer_email=None)
    assert _read("stripe", dict(event, data={"object": session_without})) == Ignore(
        "no email address in customer_details.email"
    )


def test_generic_with_a_map() -> None:
    from newsletter.sources.presets import Ignore, Signup

    data = {"c": {"mail": "g@example.com", "n": "Gil Scott", "tz": "Europe/Oslo", "id": 7}}
    mapping = {
        "email": "c.mail",
        "first_name": "c.n",
        "timezone": "c.tz",
        "event_id": "c.id",
        "ip": "c.ip",
    }
    assert _read("generic", data, **mapping) == Signup(
        "g@example.com", "Gil", timezone="Europe/Oslo", event_id="7", ip=None
    )
    # a run-time type error in an expression finds nothing there
    assert _read("generic", {"c": "text"}, email="c.mail", first_name="abs(c)") == Ignore(
        "no email address in map.email (c.mail)"
    )
    assert _read("generic", data, email="c.mail", first_name="abs(c)").first_name is None
    assert _read("generic", {"name": "x"}) == Ignore(
        "no email address in the body (add a map: for nested fields)"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" 7 ", "7"),
        (7, "7"),
        (True, None),
        (None, None),
        ("  ", None),
        (1.5, None),
        ("x" * 250, "x" * 200),
    ],
)
def test_event_ids(value: Any, expected: str | None) -> None:
    from newsletter.sources.presets import Signup

    data = {"event_type": "form_response", "event_id": value}
    data["form_response"] = {"answers": [{"type": "email", "email": "t@example.com"}]}
    assert _read("typeform", data) == Signup("t@example.com", None, event_id=expected)


def test_a_bad_map_expression_is_named() -> None:
    from newsletter.sources.presets import compile_map

    with pytest.raises(ValueError, match=r"^map\.email: 'a\[\[' is not a JMESPath expression: "):
        compile_map({"email": "a[["})


# ---- the verifiers' own rules ------------------------------------------------------------------


def _verify(preset: str, headers: dict[str, str], body: bytes = b"{}", **query: str) -> None:
    PRESETS[preset].verifier(list(SECRETS), Inbound(body, headers, query), NOW)


def test_a_stripe_header_with_a_bad_signature_before_the_good_one_verifies() -> None:
    request = inbound("stripe")
    good = request.headers["stripe-signature"]
    stamp, signature = good.split(",")
    _verify("stripe", {"stripe-signature": f" {stamp} , v1=zz, v1=00 ,{signature}"}, request.body)
    with pytest.raises(Unauthorized, match=r"^no Stripe-Signature signature matches the body$"):
        _verify("stripe", {"stripe-signature": f"{stamp},v1=zz,v1=00"}, request.body)


@pytest.mark.parametrize(
    ("preset", "headers", "message"),
    [
        (
            "tally",
            {"tally-signature": "   "},
            "the Tally-Signature header is missing; this source only takes signed posts",
        ),
        (
            "tally",
            {"tally-signature": "AAAA"},
            "the Tally-Signature signature does not match the body",
        ),
        (
            "generic",
            {"x-newsletter-signature": "sha256=zz"},
            "the X-Newsletter-Signature header is not hex",
        ),
        (
            "generic",
            {"x-newsletter-signature": "00"},
            "the X-Newsletter-Signature header must start with 'sha256='",
        ),
        (
            "framer",
            {"framer-webhook-submission-id": "s", "framer-signature": "00"},
            "the Framer-Signature header must start with 'sha256='",
        ),
        (
            "framer",
            {"framer-webhook-submission-id": "s", "framer-signature": "sha256=00"},
            "the Framer-Signature signature does not match the body",
        ),
        (
            "webflow",
            {"x-webflow-timestamp": "1764000000000", "x-webflow-signature": "00"},
            "the x-webflow-timestamp timestamp is more than 300 seconds from our clock "
            "(a replayed or delayed delivery); check the server clock",
        ),
        (
            "stripe",
            {"stripe-signature": "t=abc,v1=00"},
            "the Stripe-Signature header must look like t=<unix time>,v1=<hex>",
        ),
    ],
)
def test_each_refusal_says_what_is_wrong(
    preset: str, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(Unauthorized) as refused:
        _verify(preset, headers)
    assert str(refused.value) == message


def test_a_webflow_signature_covers_the_timestamp() -> None:
    request = inbound("webflow")
    stamp = request.headers["x-webflow-timestamp"]
    moved = dict(request.headers) | {"x-webflow-timestamp": str(int(stamp) + 1)}
    with pytest.raises(Unauthorized, match="x-webflow-signature signature does not match"):
        _verify("webflow", moved, request.body)
    _verify("webflow", dict(request.headers), request.body)


def test_a_url_token_must_be_given_and_right() -> None:
    with pytest.raises(Unauthorized) as missing:
        _verify("jotform", {})
    assert str(missing.value) == (
        "the ?token= query parameter is missing; add it to the webhook URL"
    )
    with pytest.raises(Unauthorized) as wrong:
        _verify("jotform", {}, token="new-secre")
    assert str(wrong.value) == "the ?token= query parameter is wrong"
    _verify("jotform", {}, token="old-secret")


def test_a_base64_signature_with_a_stray_character_is_refused_not_cleaned() -> None:
    request = inbound("tally")
    good = request.headers["tally-signature"]
    _verify("tally", {"tally-signature": good}, request.body)
    with pytest.raises(Unauthorized, match=r"^the Tally-Signature header is not base64$"):
        _verify("tally", {"tally-signature": good[:4] + "!" + good[4:]}, request.body)


def test_jotform_labels_lose_only_their_question_number() -> None:
    from newsletter.sources.presets import Signup

    answers = {"q2_e_mail": "j@example.com", "q3_first": "Jo", "quiz": "x"}
    assert _read("jotform", {"rawRequest": json.dumps(answers)}) == Signup("j@example.com", "Jo")
    numbered = {"q2_mail": "m@example.com", "q7_fname": "Mo"}
    assert _read("jotform", {"rawRequest": json.dumps(numbered)}) == Signup("m@example.com", "Mo")


def test_a_long_typeform_event_type_is_cut_in_the_reason() -> None:
    from newsletter.sources.presets import Ignore

    assert _read("typeform", {"event_type": "y" * 70}) == Ignore(
        f"Typeform event {'y' * 60!r} is not form_response"
    )
    assert _read("stripe", {"type": "z" * 70}) == Ignore(
        f"Stripe event {'z' * 60!r} is not checkout.session.completed"
    )
