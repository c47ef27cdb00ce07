"""The bounce and complaint report parser (pure): which email a report names, each DSN
recipient block, each ARF feedback type, the report's key. Messages are built here,
small and exact; the real-shaped samples are in ``test_bounces_imap.py``."""

from __future__ import annotations

import hashlib

import pytest

from newsletter.bounces.reports import ReportError, ReportFact, parse_report, report_key

BOUNCES = "bounces@shop.example"
BOUNDARY = "b0undary"


def dsn(
    *blocks: str,
    to: str = "To: <bounces+42@shop.example>",
    report_type: str = "delivery-status",
    original: str = "Return-Path: <x@else.example>\nX-Newsletter-Delivery: 99",
    original_type: str = "message/rfc822",
    message_id: str = "Message-Id: <r1@mx.example.org>",
) -> bytes:
    """A DSN: a message block (``Reporting-MTA``) then one block per recipient."""
    status = "\n\n".join(["Reporting-MTA: dns; mx.example.org", *blocks])
    text = (
        f"{message_id}\n{to}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{BOUNDARY}"\n'
        f"Subject: Returned mail\n\n"
        f"--{BOUNDARY}\nContent-Type: text/plain\n\nIt did not work.\n\n"
        f"--{BOUNDARY}\nContent-Type: message/delivery-status\n\n{status}\n\n"
        f"--{BOUNDARY}\nContent-Type: {original_type}\n\n{original}\n\nbody\n\n"
        f"--{BOUNDARY}--\n"
    )
    return text.replace("\n", "\r\n").encode()


def arf(
    feedback: str,
    *,
    to: str = "To: <abuse@shop.example>",
    original: str = "X-Newsletter-Delivery: 77",
) -> bytes:
    text = (
        f"Message-ID: <arf-1@mailbox.example>\n{to}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{BOUNDARY}"\n\n'
        f"--{BOUNDARY}\nContent-Type: text/plain\n\nAn abuse report.\n\n"
        f"--{BOUNDARY}\nContent-Type: message/feedback-report\n\n{feedback}\n\n"
        f"--{BOUNDARY}\nContent-Type: message/rfc822\n\n{original}\n\nbody\n\n"
        f"--{BOUNDARY}--\n"
    )
    return text.replace("\n", "\r\n").encode()


FAILED = "Final-Recipient: rfc822; Ann@Example.org\nAction: failed\nStatus: 5.1.1"


def test_a_hard_bounce_states_one_fact_with_its_reason() -> None:
    block = FAILED + "\nDiagnostic-Code: smtp; 550 5.1.1\n  user   unknown"
    parsed = parse_report(dsn(block), bounce_address=BOUNCES)
    assert parsed.report_type == "delivery-status"
    assert parsed.facts == (
        ReportFact("hard", 42, "ann@example.org", "dsn failed 5.1.1 smtp; 550 5.1.1 user unknown"),
    )


def test_each_recipient_block_is_one_fact_and_delivered_ones_say_nothing() -> None:
    blocks = (
        FAILED,
        "Final-Recipient: rfc822; ok@example.org\nAction: delivered\nStatus: 2.0.0",
        "Original-Recipient: rfc822;<Late@Example.org>\nAction: Delayed",
        "Final-Recipient: rfc822; full@example.org\nAction: failed\nStatus: 5.2.2",
        "Final-Recipient: rfc822; odd@example.org\nAction: failed\nStatus: 5.7.1",
    )
    parsed = parse_report(dsn(*blocks), bounce_address=BOUNCES)
    assert parsed.facts == (
        ReportFact("hard", 42, "ann@example.org", "dsn failed 5.1.1"),
        ReportFact("soft", 42, "late@example.org", "dsn delayed"),
        ReportFact("soft", 42, "full@example.org", "dsn failed 5.2.2"),
    )


def test_a_failure_whose_status_is_not_a_failure_states_nothing() -> None:
    block = "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 2.0.0"
    with pytest.raises(ReportError, match=r"^a delivery-status report with no failed or delayed"):
        parse_report(dsn(block), bounce_address=BOUNCES)


def test_a_failed_recipient_needs_a_status() -> None:
    with pytest.raises(ReportError, match=r"^a failed recipient without a Status field$"):
        parse_report(
            dsn("Final-Recipient: rfc822; a@example.org\nAction: failed"), bounce_address=BOUNCES
        )


def test_a_recipient_block_without_an_address_has_no_recipient() -> None:
    parsed = parse_report(dsn("Action: failed\nStatus: 4.4.7"), bounce_address=BOUNCES)
    assert parsed.facts == (ReportFact("soft", 42, None, "dsn failed 4.4.7"),)
    noted = dsn("Final-Recipient: rfc822; Ann@Example.org; note\nAction: delayed")
    assert parse_report(noted, bounce_address=BOUNCES).facts[0].recipient == "ann@example.org"
    odd = parse_report(
        dsn("Final-Recipient: rfc822; nobody\nAction: delayed"), bounce_address=BOUNCES
    )
    assert odd.facts[0].recipient is None


def test_the_reason_is_at_most_200_characters() -> None:
    block = FAILED + "\nDiagnostic-Code: smtp; " + "x" * 300
    [fact] = parse_report(dsn(block), bounce_address=BOUNCES).facts
    assert fact.reason == ("dsn failed 5.1.1 smtp; " + "x" * 300)[:200]
    assert len(fact.reason) == 200


@pytest.mark.parametrize(
    "header",
    [
        "To: <bounces+42@shop.example>",
        "Delivered-To: bounces+42@shop.example",
        "X-Original-To: bounces+42@shop.example",
        "Envelope-To: bounces+42@shop.example",
        "X-Envelope-To: <bounces+42@shop.example>",
    ],
)
def test_the_verp_address_it_came_back_to_names_the_email(header: str) -> None:
    raw = dsn(FAILED, to="To: <someone@else.example>\n" + header)
    assert parse_report(raw, bounce_address=BOUNCES).facts[0].delivery_id == 42


def test_postfix_sender_return_path_and_arf_mail_from_name_the_email() -> None:
    postfix = dsn(
        FAILED,
        to="To: <postmaster@shop.example>",
        original="X-Other: 1",
    ).replace(
        b"Reporting-MTA: dns; mx.example.org", b"X-Postfix-Sender: rfc822; bounces+43@shop.example"
    )
    assert parse_report(postfix, bounce_address=BOUNCES).facts[0].delivery_id == 43
    returned = dsn(
        FAILED,
        to="To: <postmaster@shop.example>",
        original="Return-Path: <bounces+44@shop.example>",
    )
    assert parse_report(returned, bounce_address=BOUNCES).facts[0].delivery_id == 44
    complaint = arf("Feedback-Type: abuse\nOriginal-Mail-From: <bounces+45@shop.example>")
    assert parse_report(complaint, bounce_address=BOUNCES).facts[0].delivery_id == 45


def test_the_verp_address_wins_over_the_delivery_header() -> None:
    raw = dsn(FAILED, original="X-Newsletter-Delivery: 99")
    assert parse_report(raw, bounce_address=BOUNCES).facts[0].delivery_id == 42
    # another bounce address: the VERP address is not ours, the header is read
    assert parse_report(raw, bounce_address="other@shop.example").facts[0].delivery_id == 99
    # none configured: only the header
    assert parse_report(raw, bounce_address="").facts[0].delivery_id == 99


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("1", 1),
        (" 12 ", 12),
        (str(2**63 - 1), 2**63 - 1),
        (str(2**63), None),
        ("0", None),
        ("12a", None),
        ("", None),
    ],
)
def test_the_delivery_header_must_be_a_positive_id(value: str, found: int | None) -> None:
    raw = dsn(
        FAILED, to="To: <postmaster@shop.example>", original=f"X-Newsletter-Delivery: {value}"
    )
    if found is None:
        with pytest.raises(ReportError, match=r"^the report names none of our emails"):
            parse_report(raw, bounce_address=BOUNCES)
    else:
        assert parse_report(raw, bounce_address=BOUNCES).facts[0].delivery_id == found


def test_returned_headers_alone_name_the_email() -> None:
    raw = dsn(
        FAILED,
        to="To: <postmaster@shop.example>",
        original="X-Newsletter-Delivery: 51",
        original_type="text/rfc822-headers",
    )
    assert parse_report(raw, bounce_address=BOUNCES).facts[0].delivery_id == 51


def test_without_returned_headers_nothing_names_the_email() -> None:
    raw = dsn(FAILED, to="To: <postmaster@shop.example>", original_type="text/plain")
    with pytest.raises(ReportError, match="names none of our emails"):
        parse_report(raw, bounce_address=BOUNCES)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"Content-Type: text/plain\r\n\r\nI am away.\r\n",
            r"^not a report \(Content-Type text/plain\)$",
        ),
        (
            dsn(FAILED, report_type="disposition-notification"),
            "^unknown report-type 'disposition-notification'$",
        ),
        (dsn(FAILED).replace(b"report-type=delivery-status; ", b""), "^unknown report-type ''$"),
        (
            arf("Feedback-Type: abuse").replace(b"message/feedback-report", b"text/plain"),
            "^a feedback report without a message/feedback-report part$",
        ),
        (
            dsn(FAILED).replace(
                b"Content-Type: message/delivery-status", b"Content-Type: text/plain"
            ),
            "^a delivery-status report without a message/delivery-status part$",
        ),
    ],
    ids=["not-a-report", "other-type", "no-type", "arf-without-part", "dsn-without-part"],
)
def test_what_is_not_a_usable_report(raw: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_report(raw, bounce_address=BOUNCES)


def test_the_report_type_is_read_in_any_case() -> None:
    parsed = parse_report(dsn(FAILED, report_type="Delivery-Status"), bounce_address=BOUNCES)
    assert parsed.report_type == "delivery-status"
    assert len(parsed.facts) == 1


def test_abuse_and_fraud_are_complaints_about_the_original_recipient() -> None:
    feedback = (
        "Feedback-Type: Abuse\nUser-Agent: Some   Generator/1.0\n"
        "Original-Rcpt-To: <Arf@Example.org>"
    )
    parsed = parse_report(arf(feedback), bounce_address=BOUNCES)
    assert parsed.report_type == "feedback-report"
    assert parsed.facts == (
        ReportFact("complaint", 77, "arf@example.org", "arf abuse Some Generator/1.0"),
    )
    fraud = parse_report(
        arf("Feedback-Type: fraud\nUser-Agent: " + "u" * 100), bounce_address=BOUNCES
    )
    assert fraud.facts == (ReportFact("complaint", 77, None, "arf fraud " + "u" * 80),)
    bare = parse_report(arf("Feedback-Type: abuse"), bounce_address=BOUNCES)
    assert bare.facts[0].reason == "arf abuse"


@pytest.mark.parametrize("kind", ["not-spam", "virus", ""])
def test_other_feedback_types_state_no_complaint(kind: str) -> None:
    with pytest.raises(ReportError, match=f"^feedback type '{kind}' states no complaint$"):
        parse_report(arf(f"Feedback-Type: {kind}\nUser-Agent: x"), bounce_address=BOUNCES)


def test_the_key_is_the_message_id_else_the_bytes() -> None:
    raw = dsn(FAILED, message_id="Message-Id:  <r1@mx.example.org> ")
    expected = hashlib.sha256(b"<r1@mx.example.org>").hexdigest()
    assert report_key(raw) == expected
    assert parse_report(raw, bounce_address=BOUNCES).key == expected
    anonymous = dsn(FAILED, message_id="X-Nothing: 1")
    assert report_key(anonymous) == hashlib.sha256(anonymous).hexdigest()
    assert report_key(b"garbage") == hashlib.sha256(b"garbage").hexdigest()


def test_the_key_reads_only_the_first_64_kib_of_headers() -> None:
    # the Message-ID's last character is byte 65,536: beyond the bound, so it is cut off
    head = b"X-Pad: " + b"a" * 65511 + b"\r\nMessage-ID: <abc>"
    assert len(head) == 65537
    raw = head + b"\r\n\r\nbody"
    assert report_key(raw) == hashlib.sha256(b"<abc").hexdigest()
    shorter = head[1:] + b"\r\n\r\nbody"  # one byte less: the whole id is read
    assert report_key(shorter) == hashlib.sha256(b"<abc>").hexdigest()
