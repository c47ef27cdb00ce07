"""The RFC 5322 message the SMTP and outbox backends share."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace

import pytest

from newsletter.delivery.base import OutgoingEmail
from newsletter.delivery.mime import build_mime


def message(url: str) -> OutgoingEmail:
    return OutgoingEmail(
        delivery_id=42,
        to_email="reader@example.org",
        to_name="Ré Ader",
        subject="Meet your QL, Ré — a longer subject line that still fits",
        html="<p>Hello</p>",
        text="Hello",
        from_email="tips@shop.example",
        from_name="Backwise",
        message_id="nl-42-1@shop.example",
        headers={
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def test_long_list_unsubscribe_url_survives_serialisation_verbatim() -> None:
    url = "https://newsletter.a-rather-long-shop-domain.example/unsubscribe/" + "A" * 160
    raw = build_mime(message(url)).as_bytes()
    assert f"List-Unsubscribe: <{url}>".encode() in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == f"<{url}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_text_part_comes_before_html_and_ids_are_set() -> None:
    parsed = email.message_from_bytes(
        build_mime(message("https://x.example/u/t")).as_bytes(), policy=email.policy.default
    )
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Message-ID"] == "<nl-42-1@shop.example>"
    assert parsed["X-Newsletter-Delivery"] == "42"
    assert parsed["Subject"] == "Meet your QL, Ré — a longer subject line that still fits"


@pytest.mark.parametrize(
    "name",
    ["Ann\u0085Lee", "Ann\u2028Lee", "Ann\r\nBcc: x@evil.example", "Ann\x00Lee", "Ann\u2029Lee"],
    ids=["nel", "line-separator", "crlf-injection", "nul", "paragraph-separator"],
)
def test_odd_characters_in_a_name_never_break_or_split_headers(name: str) -> None:
    built = build_mime(replace(message("https://x.example/u/t"), to_name=name, subject=name))
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert "Bcc" not in parsed
    assert parsed["To"].addresses[0].addr_spec == "reader@example.org"
    assert "\n" not in parsed["Subject"]
