"""Inputs that once answered 500 on ``POST /subscribe`` and ``POST /webhooks/sendgrid``:
deep JSON, huge integers, lone surrogates and NUL characters. Each is a 400 with a
message, and nothing is written -- except a signed SendGrid body shaped like a JSON array,
which the webhook accepts into its event inbox unparsed: the drain keeps it aside with the
same message and stores no event. Tags are cleaned like names wherever they come from."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.json_input import MAX_DEPTH, JsonInputError, load_json, nesting_exceeds
from newsletter.models import EventInbox
from newsletter.one_line import clean_tag, unstorable_reason
from newsletter.settings import Settings
from newsletter.subscriptions import clean_tags
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.test_web_subscribe import Clock, counts
from tests.test_webhook_signature import WEBHOOK, Webhook
from tests.test_webhook_signature import make_webhook as make_webhook

DEEP = 1000


@pytest.fixture
def site(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, App]]:
    app = App(make_settings())
    yield TestClient(create_web_app(app, clock=Clock(NOW))), app
    app.close()


@pytest.fixture
def webhook(make_webhook: Callable[..., Webhook]) -> Webhook:
    return make_webhook()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_BODIES = [
    pytest.param(
        '{"email": "a@example.org", "x": ' + _deep(DEEP) + "}",
        "the JSON body is nested too deeply",
        id="nested-1000-deep",
    ),
    pytest.param(
        '{"email": "a@example.org", "x": ' + _deep(MAX_DEPTH + 1) + "}",
        "the JSON body is nested too deeply",
        id="nested-just-too-deep",
    ),
    pytest.param(
        '{"email": "a@example.org", "n": ' + "7" * 4301 + "}",
        "the JSON body has an integer of 4301 digits",
        id="integer-4301-digits",
    ),
    pytest.param(
        '{"email": "a@example.org", "source": "x\\ud800y"}',
        "the 'source' field contains a lone surrogate",
        id="lone-surrogate-source",
    ),
    pytest.param(
        '{"email": "a@example.org", "first_name": "\\udcff"}',
        "the 'first_name' field contains a lone surrogate",
        id="lone-surrogate-name",
    ),
    pytest.param(
        '{"email": "a\\udc80@example.org"}',
        "the 'email' field contains a lone surrogate",
        id="lone-surrogate-email",
    ),
    pytest.param(
        '{"email": "a@example.org", "tags": ["ok", "\\ud83d"]}',
        "the 'tags' field contains a lone surrogate",
        id="lone-surrogate-tag",
    ),
    pytest.param(
        '{"email": "a@example.org", "timezone": "Europe/Berlin\\u0000"}',
        "the 'timezone' field contains a NUL character",
        id="nul-timezone",
    ),
    pytest.param(
        '{"email": "a@example.org", "source": "news\\u0000letter"}',
        "the 'source' field contains a NUL character",
        id="nul-source",
    ),
]


@pytest.mark.parametrize(("body", "message"), JSON_BODIES)
def test_hostile_json_is_a_400_with_a_message_and_writes_nothing(
    site: tuple[TestClient, App], body: str, message: str
) -> None:
    client, app = site
    response = client.post(
        "/subscribe", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message)
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b"email=a%40example.org&source=x%00y",
            "the 'source' field contains a NUL character",
            id="nul-source",
        ),
        pytest.param(
            b"email=a%40example.org&first_name=%00",
            "the 'first_name' field contains a NUL character",
            id="nul-name",
        ),
        pytest.param(
            b"email=a%40example.org&tags=a%00b",
            "the 'tags' field contains a NUL character",
            id="nul-tag",
        ),
    ],
)
def test_hostile_form_fields_are_a_400_page_and_write_nothing(
    site: tuple[TestClient, App], body: bytes, message: str
) -> None:
    client, app = site
    response = client.post(
        "/subscribe",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
    )
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            ("[" + _deep(DEEP) + "]").encode(),
            "the JSON body is nested too deeply",
            id="nested-1000-deep",
        ),
        pytest.param(
            ('[{"event": "bounce", "timestamp": 1, "x": ' + _deep(MAX_DEPTH) + "}]").encode(),
            "the JSON body is nested too deeply",
            id="nested-just-too-deep",
        ),
        pytest.param(
            ('[{"event": "bounce", "timestamp": ' + "9" * 5000 + "}]").encode(),
            "the JSON body has an integer of 5000 digits",
            id="integer-5000-digits",
        ),
    ],
)
def test_hostile_signed_webhook_body_is_kept_aside_and_stores_nothing(
    webhook: Webhook, body: bytes, message: str
) -> None:
    """Shaped like an array, so accepted (200) into the inbox; the drain refuses it with the
    message the route used to answer, keeps it aside, and stores no event."""
    response = webhook.client.post(WEBHOOK, content=body, headers=webhook.signer.headers(body, NOW))
    assert response.status_code == 200, response.text
    with webhook.app.sessions() as session:
        kept = session.execute(select(EventInbox.applied_at, EventInbox.problem)).one()
    assert kept.applied_at is None
    assert (kept.problem or "").startswith(f"EventPayloadError: {message}")
    assert webhook.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            ('{"x": ' + _deep(DEEP) + "}").encode(),
            "the JSON body is nested too deeply",
            id="object-nested-1000-deep",
        ),
        pytest.param(
            ('{"event": "bounce", "timestamp": ' + "9" * 5000 + "}").encode(),
            "the JSON body has an integer of 5000 digits",
            id="object-integer-5000-digits",
        ),
    ],
)
def test_hostile_signed_webhook_body_not_shaped_as_an_array_is_a_400(
    webhook: Webhook, body: bytes, message: str
) -> None:
    """Not shaped like an array: parsed in the request for its message; 400, nothing kept."""
    response = webhook.client.post(WEBHOOK, content=body, headers=webhook.signer.headers(body, NOW))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message)
    assert webhook.count() == 0
    assert webhook.count(EventInbox) == 0


def test_webhook_text_with_nul_and_lone_surrogate_is_stored_made_storable(
    webhook: Webhook,
) -> None:
    """A verified batch is never refused for its text (SendGrid would retry it for a day):
    NUL and lone surrogates are replaced, the event is stored, the answer is 200."""
    body = (
        b'[{"event": "bounce", "timestamp": 1795000000, "email": "x@example.org", '
        b'"reason": "bad\\u0000 \\ud800 mailbox", "sg_event_id": "e1"}]'
    )
    response = webhook.client.post(WEBHOOK, content=body, headers=webhook.signer.headers(body, NOW))
    assert response.status_code == 200, response.text
    assert webhook.count() == 1


def test_a_lone_surrogate_tag_from_the_command_line_does_not_break_subscribers_list(
    cli_env: dict[str, str],
) -> None:
    """On Linux an undecodable argument byte arrives as a lone surrogate (``\\udcff``);
    the tag is cleaned like a name, and ``subscribers list`` still prints."""
    runner = CliRunner(env=cli_env)
    added = runner.invoke(
        main, ["subscribers", "add", "tagged@example.org", "--confirmed", "--tag", "vip\udcffx"]
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, ["subscribers", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["tags"] == ["vip x"]


# ---- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("Anna", None, id="plain"),
        pytest.param("Jürgen 😀", None, id="non-ascii"),
        pytest.param("a\x00b", "a NUL character", id="nul"),
        pytest.param("a\ud800", "a lone surrogate (text that is not valid Unicode)", id="high"),
        pytest.param("\udfff", "a lone surrogate (text that is not valid Unicode)", id="low"),
        pytest.param("", None, id="empty"),
    ],
)
def test_unstorable_reason(value: str, reason: str | None) -> None:
    assert unstorable_reason(value) == reason


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        pytest.param("VIP", "vip", id="lower"),
        pytest.param("  a\r\nBcc: x  ", "a bcc: x", id="line-break"),
        pytest.param("vip\udcffx", "vip x", id="surrogate"),
        pytest.param("a\x00\x00b", "a b", id="nul"),
        pytest.param("x" * 70, "x" * 64, id="capped"),
        pytest.param("\u2028", "", id="only-separator"),
    ],
)
def test_clean_tag(raw: str, cleaned: str) -> None:
    assert clean_tag(raw, max_length=64) == cleaned


def test_clean_tags_drops_empty_and_duplicate_tags() -> None:
    assert clean_tags(["VIP", "vip\n", "\udcff", "b"]) == ["vip", "b"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b'{"a": 1}', None, id="flat"),
        pytest.param(_deep(MAX_DEPTH).encode(), None, id="at-the-limit"),
        pytest.param(_deep(MAX_DEPTH + 1).encode(), "nested too deeply", id="one-over"),
        pytest.param(_deep(5000).encode(), "nested too deeply", id="recursion"),
        pytest.param(b'{"a": {"b": ' * 40 + b"1" + b"}" * 80, "nested too deeply", id="objects"),
        pytest.param(b"1" * 64, None, id="64-digits"),
        pytest.param(b"-" + b"1" * 64, None, id="negative-64-digits"),
        pytest.param(b"1" * 65, "an integer of 65 digits", id="65-digits"),
        pytest.param(b"\xff", "the body is not valid JSON", id="not-utf8"),
        pytest.param(b"{", "the body is not valid JSON", id="not-json"),
    ],
)
def test_load_json(body: bytes, error: str | None) -> None:
    if error is None:
        load_json(body)
    else:
        with pytest.raises(JsonInputError, match=error):
            load_json(body)


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        pytest.param(1, 0, False, id="scalar"),
        pytest.param([], 1, False, id="one-level"),
        pytest.param([], 0, True, id="limit-zero"),
        pytest.param({"a": [1, {"b": []}]}, 4, False, id="four"),
        pytest.param({"a": [1, {"b": []}]}, 3, True, id="four-over-three"),
        pytest.param([1, 2, [3]], 2, False, id="scalars-do-not-count"),
    ],
)
def test_nesting_exceeds(value: object, limit: int, exceeds: bool) -> None:
    assert nesting_exceeds(value, limit) is exceeds


def test_load_json_returns_the_document_with_its_numbers() -> None:
    assert load_json(b'{"n": -12, "f": 1.5, "xs": [1, 2]}') == {"n": -12, "f": 1.5, "xs": [1, 2]}
    assert MAX_DEPTH == 32  # the documented limit (README, Hostile input)
    load_json(_deep(32).encode())
    with pytest.raises(JsonInputError):
        load_json(_deep(33).encode())
