"""SendGridMailer against the local SendGrid-compatible server: payloads and outcomes."""

from __future__ import annotations

import ast
import email.utils
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
from sendgrid_server import Fault, SendGridServer, load_validator

from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.personalization import apply_substitutions
from newsletter.delivery.sendgrid import (
    SendGridAuthError,
    SendGridMailer,
    build_mail,
    parse_retry_after,
)
from newsletter.errors import ProviderAuthError

API_KEY = "SG.test-key-1234567890"
NOW = 1_700_000_000.0
VALIDATOR = load_validator()

_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
HTML = _env.from_string(
    "<h1>Hi {{ first_name }}</h1><p>Your QL tip.</p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · 1 Main St</p>'
)
# Plain-text parts are not HTML: no escaping there.
_text_env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701
TEXT = _text_env.from_string(
    "Hi {{ first_name }}\n\nYour QL tip.\n\nUnsubscribe: {{ unsubscribe_url }}"
)


def render(index: int, first_name: str | None = None, **overrides: Any) -> OutgoingEmail:
    """One email rendered for one recipient with Jinja autoescape, as the composer does."""
    name = first_name if first_name is not None else f"Reader {index}"
    url = f"https://news.example/unsubscribe/tok-{index}?d={1000 + index}"  # as dispatch builds it
    values = {"first_name": name, "unsubscribe_url": url}
    fields: dict[str, Any] = {
        "delivery_id": 1000 + index,
        "to_email": f"reader{index}@example.com",
        "to_name": name,
        "subject": f"{name}, meet your QL",
        "html": HTML.render(values),
        "text": TEXT.render(values),
        "from_email": "tips@shop.example",
        "from_name": "Shop",
        "reply_to": "help@shop.example",
        "headers": {
            "List-Unsubscribe": f"<{url}>, <mailto:unsub@shop.example?subject=tok-{index}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ("drip", "tips"),
        "personal": values,
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=API_KEY) as running:
        yield running


def make_mailer(server: SendGridServer, **options: Any) -> SendGridMailer:
    options.setdefault("clock", lambda: NOW)
    return SendGridMailer(API_KEY, server.url, **options)


@pytest.fixture
def mailer(server: SendGridServer) -> Iterator[SendGridMailer]:
    with make_mailer(server) as running:
        yield running


@pytest.fixture
def single_mailer(server: SendGridServer) -> Iterator[SendGridMailer]:
    with make_mailer(server, batch_personalizations=False) as running:
        yield running


def personalizations_by_delivery(bodies: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """delivery id -> (body, personalization) of every recorded request."""
    found: dict[str, tuple[Any, ...]] = {}
    for body in bodies:
        for p in body["personalizations"]:
            delivery = p["custom_args"]["delivery_id"]
            assert delivery not in found, "a delivery id was sent twice"
            found[delivery] = (body, p)
    return found


def as_seen_by_recipient(body: Mapping[str, Any], p: Mapping[str, Any]) -> tuple[str, ...]:
    """Subject, text and html a recipient gets: the body with its substitutions applied."""
    subs = p.get("substitutions", {})
    content = {c["type"]: c["value"] for c in body["content"]}
    return (
        apply_substitutions(p.get("subject", body["subject"]), subs),
        apply_substitutions(content["text/plain"], subs),
        apply_substitutions(content["text/html"], subs),
    )


# ---- payloads ---------------------------------------------------------------------------


def test_one_request_per_email_carries_everything(
    server: SendGridServer, single_mailer: SendGridMailer
) -> None:
    """Unbatched: text before html, custom_args delivery id, per-recipient headers."""
    messages = [render(i) for i in range(3)]
    results = single_mailer.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert [r.delivery_id for r in results] == [1000, 1001, 1002]
    recorded = server.recorded()
    assert recorded.requests == 3
    assert {r.provider_message_id for r in results} == set(recorded.message_ids)
    sent = personalizations_by_delivery(recorded.bodies)
    for message in messages:
        body, p = sent[str(message.delivery_id)]
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["from"] == {"email": "tips@shop.example", "name": "Shop"}
        assert body["reply_to"] == {"email": "help@shop.example"}
        assert body["categories"] == ["drip", "tips"]
        assert "substitutions" not in p
        assert p["to"] == [{"email": message.to_email, "name": message.to_name}]
        assert p["custom_args"] == {"delivery_id": str(message.delivery_id)}
        assert p["headers"] == {
            **message.headers,
            "X-Newsletter-Delivery": str(message.delivery_id),
        }
        assert as_seen_by_recipient(body, p) == (message.subject, message.text, message.html)


def test_batched_request_gives_each_recipient_exactly_its_own_email(
    server: SendGridServer, mailer: SendGridMailer
) -> None:
    """Batch-vs-alone identity, including names that HTML escaping changes."""
    names = ["Anna", "O'Brien", "Smith & Jones", "<Zoë>", "Bob", "X"]
    messages = [render(i, n) for i, n in enumerate(names)]
    results = mailer.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT] * len(names)
    recorded = server.recorded()
    assert recorded.requests == 2  # "X" is too short to stand for a tag: it goes alone
    assert max(len(b["personalizations"]) for b in recorded.bodies) == 5
    sent = personalizations_by_delivery(recorded.bodies)
    for message in messages:
        body, p = sent[str(message.delivery_id)]
        assert as_seen_by_recipient(body, p) == (message.subject, message.text, message.html)
        assert p["headers"]["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
        assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert p["headers"]["X-Newsletter-Delivery"] == str(message.delivery_id)
        assert p["custom_args"] == {"delivery_id": str(message.delivery_id)}
    assert len({r.provider_message_id for r in results}) == 2


def test_more_than_1000_recipients_split_into_requests(
    server: SendGridServer, mailer: SendGridMailer
) -> None:
    messages = [render(i) for i in range(2345)]
    results = mailer.send_batch(messages)
    assert [r.delivery_id for r in results] == [m.delivery_id for m in messages]
    assert all(r.status is SendStatus.SENT for r in results)
    recorded = server.recorded()
    assert sorted(len(b["personalizations"]) for b in recorded.bodies) == [345, 1000, 1000]
    assert sorted(recorded.accepted_delivery_ids, key=int) == [str(m.delivery_id) for m in messages]
    sent = personalizations_by_delivery(recorded.bodies)
    for message in messages[::97]:
        body, p = sent[str(message.delivery_id)]
        assert as_seen_by_recipient(body, p) == (message.subject, message.text, message.html)


def test_every_body_is_schema_valid(server: SendGridServer, mailer: SendGridMailer) -> None:
    """Everything sent passes SendGrid's schema (the server also checks; double-check here)."""
    messages = [render(i) for i in range(20)] + [
        render(50, reply_to=None, from_name=None, to_name=None, categories=(), headers={}),
        render(51, html="", personal={}),
        render(52, message_id="<abc@shop.example>"),
    ]
    results = mailer.send_batch(messages)
    assert all(r.status is SendStatus.SENT for r in results), results
    recorded = server.recorded()
    assert recorded.invalid == 0
    for body in recorded.bodies:
        assert list(VALIDATOR.iter_errors(body)) == []
    _, p = personalizations_by_delivery(recorded.bodies)["1052"]
    assert p["headers"]["Message-ID"] == "<abc@shop.example>"


def test_build_mail_matches_schema_for_a_group() -> None:
    from newsletter.delivery.personalization import group_messages

    for group in group_messages([render(i) for i in range(5)]):
        assert list(VALIDATOR.iter_errors(build_mail(group))) == []


def test_connections_are_reused(server: SendGridServer, single_mailer: SendGridMailer) -> None:
    """1,000 emails one request each open no more connections than the concurrency (4)."""
    for start in range(0, 1000, 250):
        single_mailer.send_batch([render(i) for i in range(start, start + 250)])
    recorded = server.recorded()
    assert recorded.requests == 1000
    assert recorded.connections <= 4


def test_authorization_header_carries_the_key(
    server: SendGridServer, mailer: SendGridMailer
) -> None:
    mailer.send_batch([render(0)])
    assert server.recorded().authorizations == {f"Bearer {API_KEY}"}


# ---- outcomes -----------------------------------------------------------------------


def statuses(results: list[SendResult]) -> list[SendStatus]:
    return [r.status for r in results]


@pytest.mark.parametrize("status", [400, 413])
def test_400_and_413_fail_with_sendgrids_message(server: SendGridServer, status: int) -> None:
    """A permanent failure is per request: the next email still goes out."""
    server.inject(
        Fault(status=status, message="The from address does not match", error_field="from.email")
    )
    with make_mailer(server, batch_personalizations=False, concurrency=1) as mailer:
        results = mailer.send_batch([render(0), render(1)])
    assert statuses(results) == [SendStatus.FAILED, SendStatus.SENT]
    assert results[0].error == f"HTTP {status}: The from address does not match (field from.email)"
    assert server.recorded().requests == 2


def test_schema_invalid_payload_fails_with_validation_message(
    server: SendGridServer, single_mailer: SendGridMailer
) -> None:
    results = single_mailer.send_batch([render(0, to_email="not-an-address")])
    assert statuses(results) == [SendStatus.FAILED]
    assert results[0].error is not None
    assert "not-an-address" in results[0].error


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "7"}, 7.0, id="retry-after-seconds"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) + 30)}, 30.0, id="ratelimit-reset"),
        pytest.param({}, 60.0, id="no-hint-waits-a-minute"),
    ],
)
def test_429_retries_and_stops_the_rest_of_the_batch(
    server: SendGridServer, headers: dict[str, str], expected: float | None
) -> None:
    """No request storm: after a 429 nothing more of the batch is sent."""
    server.inject(Fault(status=429, headers=headers), times=1)
    with make_mailer(server, batch_personalizations=False, concurrency=1) as mailer:
        results = mailer.send_batch([render(i) for i in range(50)])
    assert statuses(results) == [SendStatus.RETRY] + [SendStatus.NOT_ATTEMPTED] * 49
    assert all(r.retry_after == expected for r in results)
    assert results[1].error is not None
    assert results[1].error.startswith("not attempted")
    assert server.recorded().requests == 1


def test_429_with_concurrency_sends_at_most_the_requests_in_flight(
    server: SendGridServer,
) -> None:
    server.inject(Fault(status=429, headers={"Retry-After": "2"}), times=None)
    with make_mailer(server, batch_personalizations=False, concurrency=4) as mailer:
        results = mailer.send_batch([render(i) for i in range(200)])
    assert statuses(results).count(SendStatus.RETRY) == server.recorded().requests
    assert set(statuses(results)) == {SendStatus.RETRY, SendStatus.NOT_ATTEMPTED}
    assert server.recorded().requests <= 4


def test_429_for_a_batched_request_applies_to_every_recipient(server: SendGridServer) -> None:
    server.inject(Fault(status=429, headers={"Retry-After": "5"}), times=1)
    with make_mailer(server, concurrency=1) as mailer:
        results = mailer.send_batch([render(i) for i in range(1500)])
    assert statuses(results) == [SendStatus.RETRY] * 1000 + [SendStatus.NOT_ATTEMPTED] * 500
    assert {r.retry_after for r in results} == {5.0}
    assert server.recorded().requests == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retries(server: SendGridServer, status: int) -> None:
    server.inject(Fault(status=status, headers={"Retry-After": "4"}), times=1)
    with make_mailer(server, batch_personalizations=False, concurrency=1) as mailer:
        results = mailer.send_batch([render(0), render(1)])
        assert statuses(results) == [SendStatus.RETRY, SendStatus.NOT_ATTEMPTED]
        assert results[0].retry_after == 4.0
        assert results[0].error is not None
        assert f"HTTP {status}" in results[0].error
        assert server.recorded().requests == 1
        again = mailer.send_batch([render(0), render(1)])
    assert statuses(again) == [SendStatus.SENT, SendStatus.SENT]


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_raise_without_the_key(server: SendGridServer, status: int) -> None:
    server.inject(Fault(status=status), times=None)
    with make_mailer(server) as mailer, pytest.raises(ProviderAuthError) as caught:
        mailer.send_batch([render(i) for i in range(3)])
    message = str(caught.value)
    assert "NEWSLETTER_SENDGRID_API_KEY" in message
    assert API_KEY not in message
    assert f"HTTP {status}" in message
    assert server.recorded().requests == 1


def test_wrong_key_is_refused_by_the_server(server: SendGridServer) -> None:
    with (
        SendGridMailer("SG.wrong", server.url) as mailer,
        pytest.raises(ProviderAuthError, match="NEWSLETTER_SENDGRID_API_KEY"),
    ):
        mailer.send_batch([render(0)])


def test_auth_error_keeps_outcomes_already_known(server: SendGridServer) -> None:
    """A 401 in the middle of a batch reports the emails that did go out."""
    server.inject(Fault(), times=2)
    server.inject(Fault(status=401), times=None)
    with (
        make_mailer(server, batch_personalizations=False, concurrency=1) as mailer,
        pytest.raises(SendGridAuthError) as caught,
    ):
        mailer.send_batch([render(i) for i in range(5)])
    known = caught.value.results
    assert [r.status if r else None for r in known] == [SendStatus.SENT] * 2 + [None] * 3


def test_dropped_connection_is_unknown_and_never_resent(server: SendGridServer) -> None:
    server.inject(Fault(drop=True), times=1)
    with make_mailer(server, batch_personalizations=False, concurrency=1) as mailer:
        results = mailer.send_batch([render(0), render(1), render(2)])
    assert statuses(results) == [
        SendStatus.UNKNOWN,
        SendStatus.NOT_ATTEMPTED,
        SendStatus.NOT_ATTEMPTED,
    ]
    assert results[0].error is not None
    assert "may have been accepted" in results[0].error
    recorded = server.recorded()
    assert recorded.requests == 1
    assert recorded.received_delivery_ids == ["1000"]


def test_dropped_batched_request_is_unknown_for_every_recipient(server: SendGridServer) -> None:
    server.inject(Fault(drop=True), times=1)
    with make_mailer(server, concurrency=1) as mailer:
        results = mailer.send_batch([render(i) for i in range(10)])
    assert statuses(results) == [SendStatus.UNKNOWN] * 10
    assert server.recorded().requests == 1


def test_read_timeout_after_sending_is_unknown(server: SendGridServer) -> None:
    server.inject(Fault(delay=1.0), times=1)
    with make_mailer(server, batch_personalizations=False, concurrency=1, timeout=0.2) as mailer:
        results = mailer.send_batch([render(0), render(1)])
    assert statuses(results) == [SendStatus.UNKNOWN, SendStatus.NOT_ATTEMPTED]
    assert server.recorded().requests == 1


def test_connection_refused_is_retry() -> None:
    with SendGridServer() as gone:
        url = gone.url
    with SendGridMailer(API_KEY, url, timeout=1.0) as mailer:
        results = mailer.send_batch([render(0), render(1)])
    assert statuses(results) == [SendStatus.RETRY, SendStatus.RETRY]
    assert results[0].error is not None
    assert "NEWSLETTER_SENDGRID_API_URL" in results[0].error


def test_write_error_before_the_body_is_sent_is_retry() -> None:
    """A failure while writing the request (SDK seam: the httpx transport) is RETRY."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.WriteError("broken pipe", request=request)

    transport = httpx.MockTransport(refuse)
    with SendGridMailer(API_KEY, "http://127.0.0.1:9", transport=transport) as mailer:
        results = mailer.send_batch([render(0)])
    assert statuses(results) == [SendStatus.RETRY]


def test_unexpected_status_is_retry_naming_the_url_setting(server: SendGridServer) -> None:
    server.inject(Fault(status=404), times=1)
    with make_mailer(server) as mailer:
        results = mailer.send_batch([render(0)])
    assert statuses(results) == [SendStatus.RETRY]
    assert results[0].error is not None
    assert "NEWSLETTER_SENDGRID_API_URL" in results[0].error


def test_content_that_looks_like_an_api_key_fails_before_sending(
    server: SendGridServer, single_mailer: SendGridMailer
) -> None:
    """The SDK's own guard is translated into FAILED; nothing reaches the server."""
    leaked = "SG.abcdefghij.klmnopqrstu and more"
    results = single_mailer.send_batch([render(0, text=leaked, personal={})])
    assert statuses(results) == [SendStatus.FAILED]
    assert server.recorded().requests == 0


def test_empty_batch_sends_nothing(server: SendGridServer, mailer: SendGridMailer) -> None:
    assert mailer.send_batch([]) == []
    assert server.recorded().requests == 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "12"}, 12.0, id="seconds"),
        pytest.param({"Retry-After": "-3"}, 0.0, id="negative"),
        pytest.param(
            {"Retry-After": email.utils.formatdate(NOW + 90, usegmt=True)}, 90.0, id="http-date"
        ),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) + 45)}, 45.0, id="reset-epoch"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) - 45)}, 0.0, id="reset-past"),
        pytest.param({"Retry-After": "2", "X-RateLimit-Reset": str(int(NOW) + 45)}, 2.0, id="both"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": "1e12"}, 3600.0, id="huge-capped"),
        pytest.param({"Retry-After": "1000000000"}, 3600.0, id="31-years-capped"),
        pytest.param({"Retry-After": "inf"}, None, id="infinite"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
        pytest.param(
            {"X-RateLimit-Reset": str(int(NOW + 45) * 1000)}, 45.0, id="reset-epoch-milliseconds"
        ),
        pytest.param({"X-RateLimit-Reset": "30"}, 30.0, id="reset-as-seconds-to-wait"),
        pytest.param({"X-RateLimit-Reset": "nan"}, None, id="reset-nan"),
        pytest.param(
            {"Retry-After": email.utils.formatdate(NOW + 10**8, usegmt=True)},
            3600.0,
            id="http-date-far-capped",
        ),
        pytest.param({}, None, id="none"),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), now=NOW) == expected


def _parse(source: str) -> ast.Module:
    """``ast.parse``, once more after CPython 3.11.7's "AST constructor recursion depth
    mismatch" SystemError (gh-106905: the depth counter is disturbed when another thread,
    here a test server left handling a deeply nested body, hits a RecursionError)."""
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(_parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_sendgrid_sdk_is_imported_by_one_delivery_module() -> None:
    """Among the mail backends only the SendGrid adapter imports the SDK."""
    package = Path(__file__).resolve().parents[1] / "newsletter/delivery"
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if {"sendgrid", "python_http_client"} & _imported_modules(path)
    )
    assert importers == ["sendgrid.py"]


def test_personalization_module_is_pure() -> None:
    path = Path(__file__).resolve().parents[1] / "newsletter/delivery/personalization.py"
    io_modules = {"sendgrid", "httpx", "sqlalchemy", "os", "socket", "time", "datetime"}
    assert not (_imported_modules(path) & io_modules)
