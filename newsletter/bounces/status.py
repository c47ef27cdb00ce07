"""Hard, soft or neither: what an SMTP reply or a DSN status says about an address (pure).

Enhanced status codes (RFC 3463) decide when present:

* ``5.1.x`` (bad destination mailbox, system or syntax) and ``5.2.1`` (mailbox disabled)
  are hard: the address will never take mail. ``5.1.7`` and ``5.1.8`` are about *our*
  sender address and say nothing about the recipient: neither.
* Other ``5.x.x`` (policy ``5.7.x``, content, our reputation) are neither: suppressing the
  reader for our own problem would be wrong. ``5.2.2`` (mailbox full) is soft.
* ``4.x.x`` is soft.

Without an enhanced code the basic reply decides: ``550``, ``551`` and ``553`` at RCPT are
hard ("no such user" replies), other 5xx neither, 4xx soft.
"""

from __future__ import annotations

import enum
import re

_ENHANCED = re.compile(r"\b([245])\.([0-9]{1,3})\.([0-9]{1,3})\b")
HARD_BASIC = frozenset({550, 551, 553})


class Severity(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    NONE = "none"


def enhanced_code(text: str) -> str | None:
    """The first enhanced status code (``5.1.1``) in a reply or DSN field, if any."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def classify_status(code: str) -> Severity:
    """An enhanced status code (``X.Y.Z``)."""
    klass, subject, detail = code.split(".")
    if klass == "4":
        return Severity.SOFT
    if klass != "5":
        return Severity.NONE
    if subject == "1" and detail not in ("7", "8"):
        return Severity.HARD
    if subject == "2":
        return {"1": Severity.HARD, "2": Severity.SOFT}.get(detail, Severity.NONE)
    return Severity.NONE


def classify_reply(code: int, text: str, *, stage: str = "rcpt") -> Severity:
    """An SMTP reply (basic code and text) at ``stage`` (``mail``, ``rcpt``, ``data``)."""
    if 400 <= code < 500:
        return Severity.SOFT
    if not 500 <= code < 600:
        return Severity.NONE
    enhanced = enhanced_code(text)
    if enhanced is not None and enhanced[0] == str(code)[0]:
        return classify_status(enhanced)
    if stage == "rcpt" and code in HARD_BASIC:
        return Severity.HARD
    return Severity.NONE
