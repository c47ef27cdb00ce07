"""``build_mail`` writes the request body out directly: it equals what the official
SendGrid helpers build (the reference below is the helper-based builder it replaced)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MimeType,
    Personalization,
    ReplyTo,
    Substitution,
    To,
)
from sendgrid.helpers.mail.exceptions import SendGridException

from newsletter.delivery.base import OutgoingEmail
from newsletter.delivery.personalization import MailGroup, Recipient, group_messages
from newsletter.delivery.sendgrid import DELIVERY_HEADER, SendGridMailer, build_mail

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def helper_mail(group: MailGroup) -> dict[str, Any]:
    """The body as ``sendgrid.helpers.mail`` builds it (the builder before issue 19)."""
    first = group.first
    mail = Mail()
    mail.from_email = From(first.from_email, first.from_name)
    mail.subject = group.subject
    if first.reply_to:
        mail.reply_to = ReplyTo(first.reply_to)
    if group.text:
        mail.add_content(Content(MimeType.text, group.text))
    if group.html:
        mail.add_content(Content(MimeType.html, group.html))
    for name in reversed(list(dict.fromkeys(first.categories))):
        mail.add_category(Category(name))
    for position, recipient in enumerate(group.recipients):
        mail.add_personalization(
            _helper_personalization(recipient.message, recipient.substitutions), index=position
        )
    body: dict[str, Any] = mail.get()
    return body


def _helper_personalization(
    message: OutgoingEmail, substitutions: Sequence[tuple[str, str]]
) -> Personalization:
    personalization = Personalization()
    personalization.add_to(To(message.to_email, message.to_name))
    for key, value in message.headers.items():
        personalization.add_header(Header(key, value))
    personalization.add_header(Header(DELIVERY_HEADER, str(message.delivery_id)))
    if message.message_id:
        personalization.add_header(Header("Message-ID", f"<{message.message_id.strip('<>')}>"))
    if message.date is not None:
        personalization.add_header(Header("Date", format_date(message.date)))
    for tag, value in substitutions:
        personalization.add_substitution(Substitution(tag, value))
    personalization.add_custom_arg(CustomArg("delivery_id", str(message.delivery_id)))
    return personalization


def format_date(moment: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(moment)


def email(n: int, name: str | None, **fields: Any) -> OutgoingEmail:
    url = f"https://news.example/unsubscribe/t{n}?d={n}"
    values: dict[str, Any] = {
        "delivery_id": n,
        "to_email": f"r{n}@example.org",
        "to_name": name,
        "subject": f"Hi {name or 'friend'}",
        "html": f"<p>Hi {name or 'there'}</p><a href='{url}'>Unsubscribe</a>",
        "text": f"Hi {name or 'there'}\nUnsubscribe: {url}\n",
        "from_email": "tips@shop.example",
        "from_name": "Shop",
        "message_id": f"nl-{n}-0-abc@shop.example",
        "headers": {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "x"},
        "categories": ("drip", "item:a", "drip"),
        "personal": {"first_name": name or "", "unsubscribe_url": url},
        "date": NOW,
    }
    values.update(fields)
    return OutgoingEmail(**values)


CASES = [
    [email(1, "Anna")],
    [email(n, f"Reader{n:03d}") for n in range(1, 30)],
    [email(1, None, from_name=None, reply_to="help@shop.example", categories=())],
    [email(1, "", from_name="", message_id=None, date=None, headers={})],
    [email(1, "O'Brien, Jr. <x>", text="", html="<p>only html</p>")],
    [email(1, "Zoë", html="", subject="")],
    [email(1, "N", to_email='"quoted"@example.org')],
]


@pytest.mark.parametrize("messages", CASES)
def test_body_equals_the_helpers(messages: list[OutgoingEmail]) -> None:
    for group in group_messages(messages):
        assert build_mail(group) == helper_mail(group)


names = st.one_of(st.none(), st.text(max_size=12))


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=5), st.sampled_from([None, "", "Shop", "A, B"]))
def test_body_equals_the_helpers_for_any_names(
    people: list[str | None], sender_name: str | None
) -> None:
    messages = [email(n, name, from_name=sender_name) for n, name in enumerate(people, 1)]
    for group in group_messages(messages):
        assert build_mail(group) == helper_mail(group)


@pytest.mark.parametrize("part", ["text", "html"])
def test_content_that_starts_like_an_api_key_is_refused_like_the_helpers(part: str) -> None:
    message = email(1, "Anna", **{part: "SG.abc123.def456 and more"})
    group = MailGroup(message.subject, message.html, message.text, (Recipient(0, message, ()),))
    with pytest.raises(SendGridException):
        helper_mail(group)
    with pytest.raises(SendGridException):
        build_mail(group)


def test_an_api_key_later_in_the_content_passes_like_the_helpers() -> None:
    message = email(1, "Anna", text="see SG.abc123.def456")
    group = MailGroup(message.subject, message.html, message.text, (Recipient(0, message, ()),))
    assert build_mail(group) == helper_mail(group)


@pytest.mark.parametrize(("concurrency", "expected"), [(1, 1000), (4, 4000)])
def test_max_batch_is_1000_personalizations_per_request_in_flight(
    concurrency: int, expected: int
) -> None:
    with SendGridMailer("SG.key", "http://127.0.0.1:9", concurrency=concurrency) as mailer:
        assert mailer.max_batch == expected
