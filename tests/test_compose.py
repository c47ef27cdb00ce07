"""Composing an email (pure): links, the Message-ID, headers and personal values; the
unsubscribe link names its email with ``?d=`` and reading ``d`` back trusts nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from newsletter.compose import (
    Sender,
    compose,
    confirm_url,
    keep_url,
    message_id_for,
    preferences_url,
    read_delivery_param,
    unsubscribe_url,
)
from newsletter.content.model import EventContext, Links, RenderedEmail, SubscriberContext
from newsletter.delivery.base import OutgoingEmail, Skeleton


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
        pytest.param("1", 1, id="one"),
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


def test_the_other_links_of_a_subscriber() -> None:
    assert preferences_url("https://news.example", "tok") == "https://news.example/preferences/tok"
    assert confirm_url("https://news.example", "tok") == "https://news.example/confirm/tok"
    assert keep_url("https://news.example", "tok") == "https://news.example/keep/tok"


@pytest.mark.parametrize(
    ("from_email", "expected"),
    [
        pytest.param("tips@shop.example", "nl-7-2-n0nce@shop.example", id="sender-domain"),
        pytest.param("odd@name@mail.example", "nl-7-2-n0nce@mail.example", id="last-at"),
        pytest.param("no-domain@", "nl-7-2-n0nce@localhost", id="empty-domain"),
    ],
)
def test_message_id_for(from_email: str, expected: str) -> None:
    assert message_id_for(7, 2, "n0nce", from_email=from_email) == expected


RENDERED = RenderedEmail("tips/posture", "Sit up", "pre", "<p>Hi Ann</p>", "Hi Ann")
SENDER = Sender("tips@shop.example", "Back\nwise", "help@shop.example", "https://news.example")
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _compose(
    rendered: RenderedEmail = RENDERED,
    *,
    recipient: SubscriberContext,
    links: Links,
    sender: Sender = SENDER,
    **kwargs: Any,
) -> OutgoingEmail:
    return compose(
        rendered,
        delivery_id=7,
        attempt=2,
        recipient=recipient,
        links=links,
        sender=sender,
        nonce="n0nce",
        now=NOW,
        **kwargs,
    )


def test_a_marketing_email_gets_one_click_unsubscribe_headers_and_every_personal_value() -> None:
    email = _compose(
        recipient=SubscriberContext(
            "ann@example.org", first_name="Ann\r\nBcc: x", attributes={"plan": "pro", "seats": 3}
        ),
        links=Links(
            unsubscribe="https://news.example/unsubscribe/t?d=7",
            preferences="https://news.example/preferences/t",
        ),
        categories=("tips",),
        subject_prefix="[test] ",
        return_path="bounces+7@shop.example",
        event=EventContext("purchase", "ev-1", {"product": "chair", "price": 120}),
    )
    assert email == OutgoingEmail(
        delivery_id=7,
        to_email="ann@example.org",
        to_name="Ann Bcc: x",
        subject="[test] Sit up",
        html="<p>Hi Ann</p>",
        text="Hi Ann",
        from_email="tips@shop.example",
        from_name="Back wise",
        reply_to="help@shop.example",
        message_id="nl-7-2-n0nce@shop.example",
        headers={
            "List-Unsubscribe": "<https://news.example/unsubscribe/t?d=7>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        categories=("tips",),
        personal={
            "email": "ann@example.org",
            "first_name": "Ann\r\nBcc: x",
            "unsubscribe_url": "https://news.example/unsubscribe/t?d=7",
            "preferences_url": "https://news.example/preferences/t",
            "attr_plan": "pro",
            "attr_seats": "3",
            "event_product": "chair",
            "event_price": "120",
        },
        date=NOW,
        return_path="bounces+7@shop.example",
    )


def test_tracking_urls_join_the_personal_values_and_the_skeleton_rides_along() -> None:
    skeleton = Skeleton("Sit up", "<p>Hi %%nl:first_name%%</p>", "Hi %%nl:first_name%%", ())
    email = _compose(
        recipient=SubscriberContext("ann@example.org", first_name="Ann"),
        links=Links(unsubscribe="https://news.example/unsubscribe/t?d=7"),
        tracking={"open_url": "https://news.example/t/o/x", "email": "tracked@example.org"},
        skeleton=skeleton,
    )
    # Last, so a tracking value of the same name wins (as the dispatcher merged them).
    assert list(email.personal.items()) == [
        ("email", "tracked@example.org"),
        ("first_name", "Ann"),
        ("unsubscribe_url", "https://news.example/unsubscribe/t?d=7"),
        ("open_url", "https://news.example/t/o/x"),
    ]
    assert email.skeleton is skeleton
    plain = _compose(
        recipient=SubscriberContext("ann@example.org", first_name="Ann"),
        links=Links(unsubscribe="https://news.example/unsubscribe/t?d=7"),
    )
    assert plain.skeleton is None
    assert "open_url" not in plain.personal


def test_a_transactional_email_has_no_unsubscribe_headers_and_absent_names_are_none() -> None:
    email = _compose(
        RenderedEmail("system/confirmation", "Confirm", "", "<p>c</p>", "c", transactional=True),
        recipient=SubscriberContext("bo@example.org"),
        links=Links(confirm="https://news.example/confirm/t"),
        sender=Sender("tips@shop.example", "", None, "https://news.example"),
    )
    assert (email.to_name, email.from_name, email.reply_to) == (None, None, None)
    assert email.headers == {}
    assert email.personal == {
        "email": "bo@example.org",
        "confirm_url": "https://news.example/confirm/t",
    }
    assert (email.subject, email.return_path, email.categories) == ("Confirm", None, ())


def test_a_transactional_email_with_an_unsubscribe_link_still_has_no_unsubscribe_headers() -> None:
    email = _compose(
        RenderedEmail("system/confirmation", "Confirm", "", "<p>c</p>", "c", transactional=True),
        recipient=SubscriberContext("bo@example.org", first_name=""),
        links=Links(unsubscribe="https://news.example/unsubscribe/t"),
    )
    assert email.headers == {}
    assert email.personal == {
        "email": "bo@example.org",
        "unsubscribe_url": "https://news.example/unsubscribe/t",
    }
    assert email.to_name is None


def test_a_marketing_email_without_an_unsubscribe_link_has_no_unsubscribe_headers() -> None:
    email = _compose(recipient=SubscriberContext("bo@example.org"), links=Links())
    assert email.headers == {}
    assert email.personal == {"email": "bo@example.org"}
