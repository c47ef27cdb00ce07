"""``web/form_input``: what ``POST /subscribe`` accepts, field by field (pure), then the
inputs that once answered 500 (or were wrongly accepted) over HTTP, with nothing written."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.models import Subscriber
from newsletter.settings import load_settings
from newsletter.web.form_input import (
    BadRequest,
    SubscribeForm,
    check_redirect,
    check_signature,
    collect_fields,
    origin_of,
    parse_json,
    parse_urlencoded,
    read_form,
)
from tests.mailbox import read_outbox
from tests.test_web_subscribe import clock as clock
from tests.test_web_subscribe import counts
from tests.test_web_subscribe import make_client as make_client
from tests.test_web_subscribe import web_app as web_app


def refused(call: Callable[[], object], status: int = 400) -> str:
    """The message of the ``BadRequest`` that ``call`` raises, after checking its status."""
    with pytest.raises(BadRequest) as caught:
        call()
    assert caught.value.status == status
    assert str(caught.value) == caught.value.message
    return caught.value.message


def test_bad_request_is_a_value_error_in_the_error_tree() -> None:
    error = BadRequest(418, "short and stout")
    assert isinstance(error, NewsletterError)
    assert isinstance(error, ValueError)
    assert (error.status, error.message, str(error)) == (418, "short and stout", "short and stout")


# ---- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"email=a%40example.org", {"email": "a@example.org"}),
        (
            b"email=a@example.org&first_name=Ann+Lee",
            {"email": "a@example.org", "first_name": "Ann Lee"},
        ),
        (b"email=a@example.org&website=", {"email": "a@example.org", "website": ""}),
        (b"tags=a&tags=b", {"tags": ["a", "b"]}),
        (b"tags=a&email=x&tags=b&tags=c", {"tags": ["a", "b", "c"], "email": "x"}),
        (b"tags%5B%5D=a&tags%5B%5D=b", {"tags[]": ["a", "b"]}),
        (b"first_name=J%C3%B6rg", {"first_name": "J\u00f6rg"}),
        (b"", {}),
    ],
    ids=[
        "escaped",
        "plus-is-space",
        "blank-kept",
        "repeated",
        "three-repeats",
        "brackets",
        "utf8",
        "empty",
    ],
)
def test_parse_urlencoded(body: bytes, fields: dict[str, Any]) -> None:
    assert parse_urlencoded(body) == fields


@pytest.mark.parametrize(
    "body",
    [b"email=a@example.org&first_name=J\xf6rg", b"email=a@example.org&first_name=J%F6rg", b"\xff"],
    ids=["latin-1-byte", "latin-1-escape", "lone-byte"],
)
def test_a_form_body_that_is_not_utf8_is_a_400(body: bytes) -> None:
    assert refused(lambda: parse_urlencoded(body)) == (
        "the form body is not UTF-8; send the form as UTF-8"
    )


def test_collect_fields_keeps_the_order_of_repeated_values() -> None:
    pairs = [("a", "1"), ("b", "x"), ("a", "2"), ("a", "3")]
    assert collect_fields(pairs) == {"a": ["1", "2", "3"], "b": "x"}
    assert collect_fields([]) == {}


def test_parse_json_returns_the_object() -> None:
    assert parse_json(b'{"email": "a@example.org", "tags": ["x"], "n": null}') == {
        "email": "a@example.org",
        "tags": ["x"],
        "n": None,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'["a@example.org"]', "the JSON body must be an object with an 'email' field"),
        (b'"a@example.org"', "the JSON body must be an object with an 'email' field"),
        (b"null", "the JSON body must be an object with an 'email' field"),
        (b"{not json", "the body is not valid JSON: "),
        (b'{"email": "\xff"}', "the body is not valid JSON: "),
    ],
    ids=["array", "string", "null", "bad-json", "not-utf8"],
)
def test_parse_json_refuses_what_is_not_an_object(body: bytes, message: str) -> None:
    assert refused(lambda: parse_json(body)).startswith(message)


# ---- fields -----------------------------------------------------------------------------


def form(**fields: Any) -> SubscribeForm:
    return read_form(fields)


def test_read_form_maps_every_field() -> None:
    assert read_form(
        {
            "email": "a@example.org",
            "first_name": "Ann",
            "timezone": "Europe/Berlin",
            "tags": "blog, shop",
            "source": "footer",
            "redirect": "https://shop.example/thanks",
            "website": "",
        }
    ) == SubscribeForm(
        email="a@example.org",
        first_name="Ann",
        timezone="Europe/Berlin",
        tags=("blog", "shop"),
        source="footer",
        redirect="https://shop.example/thanks",
        honeypot_filled=False,
    )


def test_only_email_is_required() -> None:
    assert form(email="a@example.org") == SubscribeForm(
        email="a@example.org",
        first_name=None,
        timezone=None,
        tags=(),
        source=None,
        redirect=None,
        honeypot_filled=False,
    )


@pytest.mark.parametrize(
    ("fields", "email", "first_name"),
    [
        ({"EMAIL": "b@example.org", "FNAME": "Bo"}, "b@example.org", "Bo"),
        ({"email_address": "c@example.org", "name": "Cy"}, "c@example.org", "Cy"),
        ({"contact[email]": "d@example.org"}, "d@example.org", None),
        ({"EMAIL": "late@example.org", "email": "first@example.org"}, "first@example.org", None),
        ({"FNAME": "Late", "email": "a@example.org", "first_name": "Ann"}, "a@example.org", "Ann"),
        (
            {"email": None, "EMAIL": "b@example.org", "first_name": None, "name": "Bo"},
            "b@example.org",
            "Bo",
        ),
    ],
    ids=[
        "mailchimp",
        "other-aliases",
        "bracketed",
        "email-wins",
        "first_name-wins",
        "null-is-absent",
    ],
)
def test_aliases_in_order(fields: dict[str, Any], email: str, first_name: str | None) -> None:
    result = read_form(fields)
    assert (result.email, result.first_name) == (email, first_name)


def test_json_null_for_every_optional_field_is_as_if_it_were_not_sent() -> None:
    nulls = dict.fromkeys(("first_name", "timezone", "tags", "source", "redirect", "website"))
    assert read_form({"email": "a@example.org", **nulls}) == form(email="a@example.org")


def test_a_repeated_text_field_takes_its_first_value() -> None:
    result = read_form(
        {
            "email": ["a@example.org", "b@example.org"],
            "first_name": ["Ann", "Bo"],
            "source": ["one", "two"],
            "redirect": ["https://shop.example/1", "https://evil.example/"],
        }
    )
    assert (result.email, result.first_name, result.source, result.redirect) == (
        "a@example.org",
        "Ann",
        "one",
        "https://shop.example/1",
    )


@pytest.mark.parametrize(
    "fields",
    [{}, {"email": ""}, {"email": "   "}, {"email": None}, {"email": []}, {"name": "Ann"}],
    ids=["missing", "empty", "blank", "null", "empty-list", "only-a-name"],
)
def test_email_is_required(fields: dict[str, Any]) -> None:
    assert refused(lambda: read_form(fields)) == "the 'email' field is required"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": 42}, "'email' must be a string"),
        ({"email": {"a": 1}}, "'email' must be a string"),
        ({"email": [5]}, "'email' must be a string"),
        ({"email": True}, "'email' must be a string"),
        ({"email": "a@example.org", "first_name": 7}, "'first_name' must be a string"),
        ({"email": "a@example.org", "FNAME": ["x"], "name": 1}, "'first_name' must be a string"),
        ({"email": "a@example.org", "timezone": 1.5}, "'timezone' must be a string"),
        ({"email": "a@example.org", "source": []}, None),
        ({"email": "a@example.org", "redirect": {"u": "x"}}, "'redirect' must be a string"),
        ({"email": "a@example.org", "website": 1}, "'website' must be a string"),
    ],
    ids=[
        "email-number",
        "email-object",
        "email-list-of-number",
        "email-true",
        "name-number",
        "alias-name-number",
        "timezone-float",
        "source-empty-list",
        "redirect-object",
        "honeypot-number",
    ],
)
def test_a_text_field_of_another_type_is_a_400_naming_it(
    fields: dict[str, Any], message: str | None
) -> None:
    if message is None:  # an empty list is an empty value, not an error
        assert read_form(fields).source == ""
    else:
        assert refused(lambda: read_form(fields)) == message


NUL = "a NUL character"
SURROGATE = "a lone surrogate (text that is not valid Unicode)"


@pytest.mark.parametrize(
    ("fields", "label", "reason"),
    [
        ({"email": "a\x00@example.org"}, "email", NUL),
        ({"email": "a@example.org", "first_name": "A\ud800"}, "first_name", SURROGATE),
        ({"email": "a@example.org", "redirect": "\x00"}, "redirect", NUL),
        ({"email": "a@example.org", "tags": ["ok", "b\x00d"]}, "tags", NUL),
    ],
    ids=["email", "name", "redirect", "tag"],
)
def test_unstorable_text_is_a_400_naming_the_field(
    fields: dict[str, Any], label: str, reason: str
) -> None:
    assert refused(lambda: read_form(fields)) == (
        f"the '{label}' field contains {reason}; remove it and try again"
    )


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"tags": "blog"}, ("blog",)),
        ({"tags": "blog, shop ,,  news "}, ("blog", "shop", "news")),
        ({"tags": ["blog", "shop, news"]}, ("blog", "shop", "news")),
        ({"tags": ""}, ()),
        ({"tags": " , ,"}, ()),
        ({"tags": []}, ()),
        ({"tags": None}, ()),
        ({"tags[]": ["a", "b"]}, ("a", "b")),
        ({"tags[]": "a,b"}, ("a", "b")),
        ({"tags": "x", "tags[]": ["y"]}, ("x",)),
        ({}, ()),
    ],
    ids=[
        "one",
        "comma-separated",
        "list-and-commas",
        "empty",
        "only-commas",
        "empty-list",
        "null",
        "brackets",
        "brackets-string",
        "tags-wins",
        "absent",
    ],
)
def test_tags(fields: dict[str, Any], tags: tuple[str, ...]) -> None:
    assert read_form({"email": "a@example.org", **fields}).tags == tags


@pytest.mark.parametrize(
    "fields",
    [
        {"tags": 5},
        {"tags": {"a": "b"}},
        {"tags": ["a", 5]},
        {"tags": [["a"]]},
        {"tags": True},
        {"tags[]": 0},
    ],
    ids=["number", "object", "list-with-number", "nested-list", "true", "brackets-zero"],
)
def test_a_tag_that_is_not_a_string_is_a_400_naming_the_field(fields: dict[str, Any]) -> None:
    assert refused(lambda: read_form({"email": "a@example.org", **fields})) == (
        "'tags' must be a string or a list of strings"
    )


@pytest.mark.parametrize(
    ("fields", "filled"),
    [
        ({"website": "spam"}, True),
        ({"website": ["spam", ""]}, True),
        ({"website": ""}, False),
        ({"website": "  "}, False),
        ({"website": None}, False),
        ({}, False),
        ({"url": "spam"}, False),
    ],
    ids=["filled", "first-of-list", "empty", "blank", "null", "absent", "other-field"],
)
def test_honeypot(fields: dict[str, Any], filled: bool) -> None:
    assert read_form({"email": "a@example.org", **fields}).honeypot_filled is filled


def test_honeypot_field_name_is_a_setting() -> None:
    fields = {"email": "a@example.org", "website": "", "hp_url": "spam"}
    assert read_form(fields, honeypot_field="hp_url").honeypot_filled is True
    assert read_form(fields, honeypot_field="website").honeypot_filled is False
    assert refused(lambda: read_form({**fields, "hp_url": 3}, honeypot_field="hp_url")) == (
        "'hp_url' must be a string"
    )


# ---- redirects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://shop.example", "https://shop.example"),
        ("https://shop.example/thanks?x=1#top", "https://shop.example"),
        ("HTTPS://Shop.EXAMPLE/", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("http://shop.example:80/", "http://shop.example"),
        ("https://shop.example:80/", "https://shop.example:80"),
        ("http://shop.example:443/", "http://shop.example:443"),
        ("https://shop.example:8443/x", "https://shop.example:8443"),
        ("https://shop.example:0/", "https://shop.example:0"),
        ("https://shop.example:/", "https://shop.example"),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        ("https://[::1]:8080/", "https://[::1]:8080"),
        ("https://[::1:8080]/", "https://[::1:8080]"),
    ],
    ids=[
        "bare",
        "path-query-fragment",
        "case",
        "explicit-443",
        "explicit-80",
        "https-on-80",
        "http-on-443",
        "other-port",
        "port-zero",
        "empty-port",
        "ipv4",
        "ipv6-with-port",
        "ipv6-without-port",
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://shop.example/",
        "shop.example",
        "//shop.example/x",
        "/relative/path",
        "https:///x",
        "https://user@shop.example/",
        "https://:pw@shop.example/",
        "https://user:pw@shop.example/",
        "https://shop.example:99999/",
        "https://shop.example:abc/",
        "https://shop.exa\tmple/",
        "https://shop.example/\n",
        "https://shop.example/a\rb",
        " https://shop.example/",
        "https://shop.example/ x",
        "https://shop.example/\x00",
        "https://shop.example/\x1f",
        "https://shop.example/\x7f",
        "https://shop.example/\x85",
        "https://shop.example/\u2028",
        "https://shop.exa\u200bmple/",
        "https://shop.example/\u202e",
        "https://shop.example/\u00a0",
        "https:\\\\evil.example",
        "https://shop.example\\@evil.example/",
        "",
    ],
    ids=[
        "javascript",
        "data",
        "ftp",
        "no-scheme",
        "scheme-relative",
        "relative",
        "no-host",
        "user",
        "empty-user",
        "user-and-password",
        "port-too-big",
        "port-not-a-number",
        "tab-in-host",
        "newline",
        "carriage-return",
        "leading-space",
        "space",
        "nul",
        "unit-separator",
        "del",
        "next-line",
        "line-separator",
        "zero-width-space",
        "bidi-override",
        "no-break-space",
        "backslashes",
        "backslash-at",
        "empty",
    ],
)
def test_origin_of_refuses(url: str) -> None:
    assert origin_of(url) is None


ALLOWED = ("https://shop.example", "http://127.0.0.1:8765")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://shop.example/thanks?x=1", ALLOWED),
        ("http://127.0.0.1:8765/done", ALLOWED),
        ("https://shop.example:443/thanks", ALLOWED),
        ("https://shop.example/thanks", ("https://shop.example:443",)),
        ("http://shop.example/thanks", ("http://shop.example:80/",)),
        ("https://Shop.Example/thanks", ("https://shop.example/",)),
    ],
    ids=["https", "http-with-port", "explicit-443", "allowed-443", "allowed-80", "case-and-slash"],
)
def test_a_redirect_on_an_allowed_origin_is_returned_unchanged(
    url: str, allowed: tuple[str, ...]
) -> None:
    assert check_redirect(url, allowed) == url


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://evil.example/", ALLOWED),
        ("https://shop.example.evil.example/", ALLOWED),
        ("http://shop.example/", ALLOWED),
        ("https://shop.example:8443/", ALLOWED),
        ("https://127.0.0.1:8765/", ALLOWED),
        ("https://shop.exa\tmple/", ALLOWED),
        ("javascript:alert(1)", ALLOWED),
        ("javascript:alert(1)", ("shop.example",)),
        ("https://shop.example/", ("shop.example",)),
        ("javascript:alert(1)", ("javascript:alert(1)",)),
        ("https://shop.example/", ()),
        ("https://[::1:8080]/", ("https://[::1]:8080",)),
    ],
    ids=[
        "other-host",
        "suffix-host",
        "other-scheme",
        "other-port",
        "http-origin-over-https",
        "tab",
        "javascript",
        "javascript-with-schemeless-entry",
        "schemeless-entry-matches-nothing",
        "javascript-entry",
        "nothing-allowed",
        "ipv6-port-inside-brackets",
    ],
)
def test_a_redirect_elsewhere_is_a_400(url: str, allowed: tuple[str, ...]) -> None:
    assert refused(lambda: check_redirect(url, allowed)) == (
        "the 'redirect' URL is not on an allowed origin"
    )


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("https://shop.example:443", ("https://shop.example",)),
        ("http://shop.example:80/", ("http://shop.example",)),
        (
            "https://shop.example:80,http://shop.example:443",
            ("https://shop.example:80", "http://shop.example:443"),
        ),
        ("https://shop.example:8443", ("https://shop.example:8443",)),
    ],
    ids=["https-443", "http-80", "swapped-defaults", "other-port"],
)
def test_allowed_origins_leave_out_the_default_port(
    tmp_path: Path, value: str, origins: tuple[str, ...]
) -> None:
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp_path),
            "NEWSLETTER_SECRET_KEY": "k",
            "NEWSLETTER_ALLOWED_ORIGINS": value,
        }
    )
    assert settings.origins == origins


@pytest.mark.parametrize(
    "value", ["shop.example", "javascript:alert(1)", "https://shop.example,shop.example"]
)
def test_an_allowed_origin_without_a_scheme_is_refused_at_start_up(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_ALLOWED_ORIGINS": value,
            }
        )
    bad = value.split(",")[-1]
    assert str(caught.value) == (
        f"NEWSLETTER_ALLOWED_ORIGINS: {bad!r} is not an origin (no http:// or https://); "
        "an origin is scheme://host[:port], e.g. https://shop.example"
    )


def test_cors_answers_a_browser_when_the_origin_was_written_with_443(
    make_client: Callable[..., tuple[TestClient, App]],
) -> None:
    client, _ = make_client(allowed_origins="https://shop.example:443")
    answer = client.options(
        "/subscribe",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"


# ---- signatures -------------------------------------------------------------------------

BODY = b'{"email": "signed@example.org"}'


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        sign(BODY, "form-secret"),
        sign(BODY, "form-secret").upper().replace("SHA256", "sha256"),
        f"  {sign(BODY, 'form-secret')} ",
    ],
    ids=["lower-hex", "upper-hex", "surrounding-space"],
)
def test_a_valid_signature_is_accepted(header: str) -> None:
    assert check_signature(BODY, header, "form-secret") is None


def test_an_unsigned_request_needs_no_secret() -> None:
    assert check_signature(BODY, None, "") is None
    assert check_signature(BODY, None, "form-secret") is None


@pytest.mark.parametrize(
    "header",
    [sign(BODY, ""), sign(BODY, "form-secret"), "sha256=" + "0" * 64, "md5=abc"],
    ids=["signed-with-the-empty-key", "signed-with-a-real-key", "zeros", "other-scheme"],
)
def test_without_a_form_secret_every_signed_request_is_refused(header: str) -> None:
    assert refused(lambda: check_signature(BODY, header, ""), 403) == (
        "signed requests are not accepted: no form secret is configured"
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (sign(BODY, "other-secret"), "X-Newsletter-Signature does not match the body"),
        (sign(BODY + b" ", "form-secret"), "X-Newsletter-Signature does not match the body"),
        ("sha256=" + "0" * 64, "X-Newsletter-Signature does not match the body"),
        ("sha256=" + "a" * 63, "X-Newsletter-Signature must look like sha256=<64 hex digits>"),
        ("sha256=" + "a" * 65, "X-Newsletter-Signature must look like sha256=<64 hex digits>"),
        ("sha256=" + "g" * 64, "X-Newsletter-Signature must look like sha256=<64 hex digits>"),
        (
            sign(BODY, "form-secret").replace("sha256", "SHA256"),
            "X-Newsletter-Signature must look like sha256=<64 hex digits>",
        ),
        (
            sign(BODY, "form-secret").replace("sha256=", "sha256:"),
            "X-Newsletter-Signature must look like sha256=<64 hex digits>",
        ),
        (
            sign(BODY, "form-secret")[7:],
            "X-Newsletter-Signature must look like sha256=<64 hex digits>",
        ),
        ("", "X-Newsletter-Signature must look like sha256=<64 hex digits>"),
    ],
    ids=[
        "other-secret",
        "other-body",
        "zeros",
        "63-digits",
        "65-digits",
        "not-hex",
        "upper-scheme",
        "colon",
        "bare-digest",
        "empty",
    ],
)
def test_a_bad_signature_is_a_403(header: str, message: str) -> None:
    assert refused(lambda: check_signature(BODY, header, "form-secret"), 403) == message


# ---- over HTTP: status and nothing written ----------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"email=a@example.org&first_name=J\xf6rg", FORM, 400, "the form body is not UTF-8"),
        (b"email=a@example.org&first_name=J%F6rg", FORM, 400, "the form body is not UTF-8"),
        (b'{"email": "a@example.org", "tags": 5}', None, 400, "'tags' must be a string"),
        (b'{"email": "a@example.org", "tags": {"a": 1}}', None, 400, "'tags' must be a string"),
        (b'{"email": "a@example.org", "tags": ["a", 1]}', None, 400, "'tags' must be a string"),
        (
            b'{"email": "a@example.org", "first_name": 5}',
            None,
            400,
            "'first_name' must be a string",
        ),
        (
            b"email=a@example.org&redirect=https%3A%2F%2Fshop.exa%09mple%2F",
            FORM,
            400,
            "the 'redirect' URL is not on an allowed origin",
        ),
        (
            b'{"email": "a@example.org", "redirect": "javascript:alert(1)"}',
            None,
            400,
            "the 'redirect' URL is not on an allowed origin",
        ),
    ],
    ids=[
        "latin-1-form",
        "latin-1-escape",
        "tag-number",
        "tag-object",
        "tag-list-with-number",
        "name-number",
        "tab-in-redirect",
        "javascript-redirect",
    ],
)
def test_bad_input_over_http_is_a_4xx_and_writes_nothing(
    web_app: tuple[TestClient, App],
    content: bytes,
    headers: dict[str, str] | None,
    status: int,
    message: str,
) -> None:
    client, app = web_app
    sent = headers or {"Content-Type": "application/json"}
    response = client.post("/subscribe", content=content, headers=sent)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert counts(app) == (0, 0, 0)
    assert read_outbox(app.settings.effective_outbox_dir) == []


def test_without_form_secret_a_signed_post_is_refused_over_http(
    make_client: Callable[..., tuple[TestClient, App]],
) -> None:
    client, app = make_client(form_secret="")
    body = json.dumps({"email": "signed@example.org"}).encode()
    response = client.post(
        "/subscribe",
        content=body,
        headers={"Content-Type": "application/json", "X-Newsletter-Signature": sign(body, "")},
    )
    assert response.status_code == 403
    assert response.json()["error"] == (
        "signed requests are not accepted: no form secret is configured"
    )
    assert counts(app) == (0, 0, 0)


def stored(app: App) -> Subscriber:
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        session.expunge(subscriber)
        return subscriber


def test_json_nulls_are_accepted_over_http(web_app: tuple[TestClient, App]) -> None:
    client, app = web_app
    body = {"email": "a@example.org", "first_name": None, "tags": None, "timezone": None}
    response = client.post("/subscribe", json={**body, "source": None, "redirect": None})
    assert response.status_code == 202, response.text
    subscriber = stored(app)
    assert (subscriber.email, subscriber.first_name, subscriber.tags) == ("a@example.org", None, [])


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_repeated_fields_over_http(web_app: tuple[TestClient, App], encoding: str) -> None:
    client, app = web_app
    pairs = [
        ("email", "first@example.org"),
        ("email", "second@example.org"),
        ("first_name", "Ann"),
        ("first_name", "Bo"),
        ("tags", "blog, shop"),
        ("tags", "news"),
    ]
    if encoding == "urlencoded":
        response = client.post(
            "/subscribe",
            content="&".join(f"{k}={v}" for k, v in pairs).encode(),
            headers=FORM,
        )
    else:
        response = client.post(
            "/subscribe",
            files=[(k, (None, v)) for k, v in pairs],
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 202, response.text
    subscriber = stored(app)
    assert (subscriber.email, subscriber.first_name) == ("first@example.org", "Ann")
    assert sorted(subscriber.tags) == ["blog", "news", "shop"]


def test_a_redirect_with_explicit_443_is_followed(web_app: tuple[TestClient, App]) -> None:
    client, app = web_app
    response = client.post(
        "/subscribe",
        data={"email": "a@example.org", "redirect": "https://shop.example:443/thanks"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "https://shop.example:443/thanks"
    assert counts(app)[0] == 1
