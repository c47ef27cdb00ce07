"""Issue 11: an email that cannot be built fails alone; the rest of its chunk goes out.

Each email is built and checked before its chunk is handed to the mailer; one that
cannot be (here: an address ``/subscribe`` accepts whose local part is an RFC 2047
encoded word decoding to CR/LF, or text UTF-8 cannot encode) is recorded ``failed``
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.delivery.base import OutgoingEmail, SendStatus, Skeleton
from newsletter.delivery.checks import message_problem
from newsletter.delivery.mime import mime_problem
from newsletter.delivery.outbox import OutboxMailer
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.conftest import NOW
from tests.factories import add_subscriber, add_subscribers, queue_deliveries
from tests.mailbox import read_outbox

# email-validator takes it (every character is atext); Python's email package decodes it.
ENCODED_ADDRESS = "=?utf-8?q?=0d=0abcc=3a_boss=40v.example=0d=0a?=@example.org"


def test_an_address_that_cannot_be_built_fails_alone_in_a_100_email_chunk(
    make_settings: Callable[..., Settings], cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """99 emails are written to the outbox; the 100th, in the middle, is ``failed`` with
    the reason; nothing is left ``unknown``."""
    app = App(make_settings())
    with transaction(app.sessions) as session:
        ids = add_subscribers(session, 50)
        ids.append(add_subscriber(session, ENCODED_ADDRESS).id)
        ids += add_subscribers(session, 49)
        queue_deliveries(session, ids, item_id="tips/meet-your-ql")
    app.close()
    later = (NOW + timedelta(minutes=1)).isoformat()
    result = CliRunner().invoke(main, ["tick", "--now", later, "--job", "deliver"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        'deliver: {"batches": 1, "claimed": 100, "commits": 4, '
        '"outcomes": {"failed": 1, "sent": 99}, "sent": 99}\n'
    )
    app = App(make_settings())
    with app.sessions() as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    app.close()
    assert [r.status for r in rows] == ["sent"] * 50 + ["failed"] + ["sent"] * 49
    assert rows[50].error == (
        f"not sendable: the recipient address {ENCODED_ADDRESS!r} holds '=?', which mail "
        "software would decode as an RFC 2047 encoded word"
    )
    written = read_outbox(tmp_path / "outbox")
    assert len(written) == 99
    assert ENCODED_ADDRESS not in {str(m["To"]) for m in written}


def sample(delivery_id: int, **changes: Any) -> OutgoingEmail:
    message = OutgoingEmail(
        delivery_id=delivery_id,
        to_email=f"reader{delivery_id}@example.org",
        to_name="Ann",
        subject="A tip",
        html="<p>Hello</p>",
        text="Hello",
        from_email="tips@shop.example",
        from_name="Backwise",
        message_id=f"nl-{delivery_id}-1-00ff@shop.example",
        date=NOW,
    )
    return replace(message, **changes)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param(
            {"text": "Hi \ud800"},
            "the text part holds a character UTF-8 cannot encode at position 3",
            id="lone-surrogate-in-text",
        ),
        pytest.param(
            {"to_name": "Ann\r\nBcc: boss@v.example"},
            "the recipient name 'Ann\\r\\nBcc: boss@v.example' would not stay one header line",
            id="crlf-in-to-name",
        ),
        pytest.param(
            {"subject": "x=?utf-8?q?=0D=0ABcc:_a@b?="},
            "the subject 'x=?utf-8?q?=0D=0ABcc:_a@b?=' would not stay one header line",
            id="encoded-word-in-subject",
        ),
        pytest.param(
            {"to_email": "a@b.example, c@d.example"},
            "the recipient address 'a@b.example, c@d.example' is not a single plain address",
            id="two-recipients",
        ),
        pytest.param(
            {"headers": {"List-Unsubscribe": "<https://x.example/u>\nBcc: a@b.example"}},
            "the List-Unsubscribe header '<https://x.example/u>\\nBcc: a@b.example' would "
            "not stay one header line",
            id="crlf-in-a-header",
        ),
        pytest.param(
            {"from_email": "tips at shop"},
            "the sender address 'tips at shop' is not a single plain address",
            id="bad-sender",
        ),
        pytest.param(
            {"reply_to": "help@shop.example>"},
            "the reply-to address 'help@shop.example>' is not a single plain address",
            id="bad-reply-to",
        ),
        pytest.param(
            {"to_email": "=?x?q?y?=@example.org"},
            "the recipient address '=?x?q?y?=@example.org' holds '=?', which mail software "
            "would decode as an RFC 2047 encoded word",
            id="encoded-word-address",
        ),
        pytest.param(
            {"from_name": "Back\nwise"},
            "the sender name 'Back\\nwise' would not stay one header line",
            id="crlf-in-from-name",
        ),
        pytest.param(
            {"message_id": "a\n@b"},
            "the Message-ID 'a\\n@b' would not stay one header line",
            id="crlf-in-message-id",
        ),
        pytest.param(
            {"categories": ("drip", "a\nb")},
            "the category 2 'a\\nb' would not stay one header line",
            id="crlf-in-category",
        ),
        pytest.param(
            {"html": "<p>\udfff</p>"},
            "the html part holds a character UTF-8 cannot encode at position 3",
            id="lone-surrogate-in-html",
        ),
        pytest.param(
            {"subject": "=?" + "x" * 100},
            f"the subject {'=?' + 'x' * 78!r} would not stay one header line",
            id="long-value-shown-to-80",
        ),
        pytest.param(
            {"to_email": "a" * 100 + " b@example.org"},
            f"the recipient address {'a' * 80!r} is not a single plain address",
            id="long-address-shown-to-80",
        ),
        pytest.param(
            {"to_email": "=?" + "a" * 100 + "@example.org"},
            f"the recipient address {'=?' + 'a' * 78!r} holds '=?', which mail software "
            "would decode as an RFC 2047 encoded word",
            id="long-encoded-address-shown-to-80",
        ),
        pytest.param(
            {"to_name": None, "from_name": None, "reply_to": None, "message_id": None},
            None,
            id="optional-fields-absent",
        ),
        pytest.param(
            {"subject": "Two  spaces"},
            "the subject 'Two  spaces' would not stay one header line",
            id="double-space-in-subject",
        ),
        pytest.param(
            {"from_name": " Backwise"},
            "the sender name ' Backwise' would not stay one header line",
            id="leading-space-in-from-name",
        ),
        pytest.param(
            {"to_name": "Ann "},
            "the recipient name 'Ann ' would not stay one header line",
            id="trailing-space-in-to-name",
        ),
        pytest.param(
            {"to_name": "Ann\udfff"},
            "the recipient name 'Ann\\udfff' would not stay one header line",
            id="lone-surrogate-in-to-name",
        ),
        pytest.param(
            {"to_name": "Zoë Müller", "subject": "Ça va, Zoë?"},
            None,
            id="non-ascii-one-line-values",
        ),
        pytest.param({}, None, id="fine"),
    ],
)
def test_message_problem(changes: dict[str, Any], problem: str | None) -> None:
    assert message_problem(sample(1, **changes)) == problem


def test_mime_problem_catches_what_the_email_package_would_decode() -> None:
    """Even a value that skipped every cleaning cannot add a header to the built email."""
    assert mime_problem(sample(1)) is None
    # The To value's encoded word decodes to CR LF: refused before any backend sees it.
    assert mime_problem(sample(1, to_email=ENCODED_ADDRESS)) == (
        "the built email's To header holds a line break"
    )


def test_mime_problem_names_a_value_the_header_block_cannot_carry() -> None:
    """An address UTF-8 cannot encode (it skipped ``message_problem``) is refused, with the
    reason, by building the header block, as the backends would fail it."""
    assert mime_problem(sample(1, to_email="a\ud800@example.org")) == (
        "cannot build the email: UnicodeEncodeError: 'utf-8' codec can't encode character "
        "'\\ud800' in position 62: surrogates not allowed"
    )


def test_outbox_fails_an_unbuildable_email_alone(tmp_path: Path) -> None:
    """Handed over anyway, the outbox fails the one email and writes the others."""
    mailer = OutboxMailer(tmp_path)
    messages = [sample(1), sample(2, text="Hi \ud800"), sample(3)]
    results = mailer.send_batch(messages)
    assert [r.status for r in results] == [SendStatus.SENT, SendStatus.FAILED, SendStatus.SENT]
    assert results[1].error is not None
    assert results[1].error.startswith("outbox: cannot build the email: UnicodeEncodeError")
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == [
        "000000000001.eml",
        "000000000003.eml",
    ]


def test_outbox_checks_the_bytes_it_writes(tmp_path: Path) -> None:
    """Handed over without the dispatcher's checks, an email whose built header block
    reads back with an extra line (a To value whose encoded word decodes to CR LF) fails
    alone: no file holds it."""
    mailer = OutboxMailer(tmp_path)
    results = mailer.send_batch([sample(1), sample(2, to_email=ENCODED_ADDRESS), sample(3)])
    assert [r.status for r in results] == [SendStatus.SENT, SendStatus.FAILED, SendStatus.SENT]
    assert results[1].error == "outbox: the built email's To header holds a line break"
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == [
        "000000000001.eml",
        "000000000003.eml",
    ]
    assert all(ENCODED_ADDRESS.encode() not in p.read_bytes() for p in tmp_path.glob("*"))


def test_outbox_writes_the_bytes_it_checked(tmp_path: Path) -> None:
    """Each email is built once: the file is the checked build (same Message-ID, which
    is made at build time when the email has none)."""
    mailer = OutboxMailer(tmp_path)
    [result] = mailer.send_batch([sample(4, message_id=None)])
    written = (tmp_path / "000000000004.eml").read_bytes()
    assert result.status is SendStatus.SENT
    assert f"Message-ID: <{result.provider_message_id}>\r\n".encode() in written
    assert mime_problem(sample(4)) is None


def planned(
    value: str,
    *,
    skeleton_html: str = "<p>Hello %%nl:first_name%%</p>",
    skeleton_text: str = "Hello",
) -> OutgoingEmail:
    """An email made from a batch skeleton: its parts are the skeleton's with ``value``."""
    html = skeleton_html.replace("%%nl:first_name%%", value)
    text = skeleton_text.replace("%%nl:first_name%%", value)
    skeleton = Skeleton("A tip", skeleton_html, skeleton_text, (("%%nl:first_name%%", value),))
    return sample(1, html=html, text=text, skeleton=skeleton)


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        pytest.param(planned("Zoë"), None, id="fine"),
        pytest.param(
            planned("Z\ud800"),
            "the html part holds a character UTF-8 cannot encode at position 10",
            id="in-a-value",
        ),
        pytest.param(
            planned("Zoë", skeleton_html="<p>\udfff %%nl:first_name%%</p>"),
            "the html part holds a character UTF-8 cannot encode at position 3",
            id="in-the-skeleton",
        ),
        pytest.param(
            planned("Zoë", skeleton_text="Hi \udfff %%nl:first_name%%"),
            "the text part holds a character UTF-8 cannot encode at position 3",
            id="in-the-skeleton-text",
        ),
        pytest.param(
            replace(planned("Zoë"), text="Hi \ud800", skeleton=None),
            "the text part holds a character UTF-8 cannot encode at position 3",
            id="no-skeleton",
        ),
    ],
)
def test_message_problem_of_an_email_made_from_a_skeleton(
    email: OutgoingEmail, problem: str | None
) -> None:
    """The parts of a batch's emails are checked through their shared skeleton (once) and
    each email's values; any doubt and the whole part is checked, with its position."""
    assert message_problem(email) == problem


@pytest.mark.parametrize(
    ("email", "known"),
    [
        pytest.param(sample(1), False, id="no-skeleton"),
        pytest.param(planned("Zoë"), True, id="fine"),
        pytest.param(planned("Z\ud800"), False, id="in-a-value"),
        pytest.param(planned("Zoë", skeleton_html="<p>\udfff</p>"), False, id="in-the-html"),
        pytest.param(planned("Zoë", skeleton_text="\udfff"), False, id="in-the-text"),
    ],
)
def test_the_parts_of_a_skeleton_email_are_known_to_encode_without_a_pass(
    email: OutgoingEmail, known: bool
) -> None:
    """The fast path is taken for a batch's emails (the parts are not read whole)."""
    from newsletter.delivery.checks import _skeleton_encodable

    assert _skeleton_encodable(email) is known
