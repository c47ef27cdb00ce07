"""``bounces.status``: hard, soft or neither, from an enhanced code or an SMTP reply (pure)."""

from __future__ import annotations

import pytest

from newsletter.bounces.status import (
    HARD_BASIC,
    Severity,
    classify_reply,
    classify_status,
    enhanced_code,
)

HARD, SOFT, NONE = Severity.HARD, Severity.SOFT, Severity.NONE


def test_severity_values_are_what_the_database_stores() -> None:
    assert [s.value for s in Severity] == ["hard", "soft", "none"]
    assert frozenset({550, 551, 553}) == HARD_BASIC


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("550 5.1.1 <a@example.org>: Recipient address rejected", "5.1.1"),
        ("smtp; 452 4.2.2 Mailbox full", "4.2.2"),
        ("2.0.0 Ok", "2.0.0"),
        ("5.7.1 then 5.1.1", "5.7.1"),
        ("5.100.200 long fields", "5.100.200"),
        ("5.1000.1 a subject of four digits", None),
        ("3.1.1 is not a class", None),
        ("15.1.1 inside a number", None),
        ("5.1 short", None),
        ("550 no enhanced code", None),
        ("", None),
    ],
    ids=[
        "reply",
        "dsn-field",
        "success",
        "first-wins",
        "three-digit-fields",
        "four-digit-subject",
        "class-3",
        "inside-a-number",
        "two-parts",
        "none",
        "empty",
    ],
)
def test_enhanced_code(text: str, code: str | None) -> None:
    assert enhanced_code(text) == code


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        ("5.1.1", HARD),
        ("5.1.0", HARD),
        ("5.1.2", HARD),
        ("5.1.10", HARD),
        ("5.1.7", NONE),
        ("5.1.8", NONE),
        ("5.2.1", HARD),
        ("5.2.2", SOFT),
        ("5.2.0", NONE),
        ("5.2.3", NONE),
        ("5.7.1", NONE),
        ("5.3.4", NONE),
        ("5.0.0", NONE),
        ("4.1.1", SOFT),
        ("4.2.2", SOFT),
        ("4.7.0", SOFT),
        ("2.1.5", NONE),
        ("2.0.0", NONE),
    ],
    ids=lambda v: str(v),
)
def test_classify_status(code: str, severity: Severity) -> None:
    assert classify_status(code) is severity


@pytest.mark.parametrize(
    ("code", "text", "stage", "severity"),
    [
        (550, "5.1.1 no such user", "rcpt", HARD),
        (550, "no such user", "rcpt", HARD),
        (551, "user not local", "rcpt", HARD),
        (553, "mailbox name not allowed", "rcpt", HARD),
        (552, "too big", "rcpt", NONE),
        (554, "transaction failed", "rcpt", NONE),
        (500, "syntax error", "rcpt", NONE),
        (599, "", "rcpt", NONE),
        (550, "no such user", "data", NONE),
        (550, "no such user", "mail", NONE),
        (550, "5.7.1 policy rejection", "rcpt", NONE),
        (550, "5.2.2 mailbox full", "rcpt", SOFT),
        (550, "5.1.1 at data", "data", HARD),
        (550, "4.2.2 mixed classes: the basic code decides", "rcpt", HARD),
        (554, "4.1.1 mixed classes", "rcpt", NONE),
        (450, "mailbox busy", "rcpt", SOFT),
        (400, "", "rcpt", SOFT),
        (499, "", "data", SOFT),
        (452, "5.1.1 a 4xx is soft whatever it quotes", "rcpt", SOFT),
        (399, "", "rcpt", NONE),
        (600, "5.1.1", "rcpt", NONE),
        (250, "2.1.5 ok", "rcpt", NONE),
        (0, "", "rcpt", NONE),
        (500, "5.1.1 bad mailbox", "rcpt", HARD),
        (5000, "5.1.1 not a reply code", "rcpt", NONE),
        (55, "5.1.1 not a reply code", "rcpt", NONE),
    ],
    ids=[
        "550-enhanced",
        "550-basic",
        "551",
        "553",
        "552",
        "554",
        "500",
        "599",
        "550-at-data",
        "550-at-mail",
        "policy",
        "enhanced-full-mailbox",
        "enhanced-decides-at-data",
        "mixed-class-falls-back",
        "mixed-class-554",
        "450",
        "400",
        "499",
        "4xx-with-5-code",
        "399",
        "600",
        "250",
        "zero",
        "500-enhanced",
        "four-digits",
        "two-digits",
    ],
)
def test_classify_reply(code: int, text: str, stage: str, severity: Severity) -> None:
    assert classify_reply(code, text, stage=stage) is severity


def test_classify_reply_defaults_to_the_rcpt_stage() -> None:
    assert classify_reply(550, "no such user") is HARD
