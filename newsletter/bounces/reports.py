"""Parse a bounce (DSN, RFC 3464) or complaint (ARF, RFC 5965) report (pure).

``parse_report`` takes the raw message and returns the facts it states, each naming one
of our emails (a delivery id); anything else is a ``ReportError`` and the message is
kept aside, never acted on. Decisions:

* The report must be ``multipart/report`` with ``report-type=delivery-status`` (a
  ``message/delivery-status`` part) or ``report-type=feedback-report`` (a
  ``message/feedback-report`` part). Out-of-office replies and other mail are not reports.
* The email it is about: the VERP address it was sent back to (``To``, ``Delivered-To``,
  ``X-Original-To``, Postfix's ``X-Postfix-Sender``, ARF's ``Original-Mail-From``), else
  the ``X-Newsletter-Delivery`` header of the returned message or its headers. None found:
  a ``ReportError``.
* DSN: one fact per recipient block with ``Action: failed`` (hard or soft by its
  ``Status``, ``newsletter.bounces.status``) or ``Action: delayed`` (soft). ``delivered``,
  ``relayed`` and ``expanded`` blocks say nothing; a report with no block left, or a
  failed block without a status, is a ``ReportError``.
* ARF: ``Feedback-Type: abuse`` (or ``fraud``) is a complaint about ``Original-Rcpt-To``;
  ``not-spam`` and other types state nothing (``ReportError``, kept aside for a person).
* The report's key (what makes it processed once) is a SHA-256 of its ``Message-ID``,
  else of its bytes.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser

from newsletter.bounces.status import Severity, classify_status, enhanced_code
from newsletter.bounces.verp import read_verp
from newsletter.errors import NewsletterError

COMPLAINT = "complaint"
_DELIVERY_HEADER = "X-Newsletter-Delivery"
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
_DIGITS = re.compile(r"\s*([0-9]{1,19})\s*")
_ADDRESS = re.compile(r"<?([^<>\s;]+@[^<>\s;]+)>?")


class ReportError(NewsletterError, ValueError):
    """The message is not a report we can act on; it is kept aside for a person."""


@dataclass(frozen=True)
class ReportFact:
    kind: str  # hard | soft | complaint
    delivery_id: int
    recipient: str | None
    reason: str


@dataclass(frozen=True)
class Report:
    key: str
    report_type: str  # delivery-status | feedback-report
    facts: tuple[ReportFact, ...]


def report_key(raw: bytes) -> str:
    """What makes a report processed once, even when it cannot be parsed."""
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
    message_id = str(headers.get("Message-ID") or "").strip()
    return hashlib.sha256(message_id.encode() if message_id else raw).hexdigest()


def parse_report(raw: bytes, *, bounce_address: str) -> Report:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if message.get_content_type() != "multipart/report":
        raise ReportError(f"not a report (Content-Type {message.get_content_type()})")
    param = message.get_param("report-type")
    kind = param.lower() if isinstance(param, str) else ""
    original = _original_headers(message)
    delivery_id = _delivery_id(message, original, bounce_address)
    if kind == "delivery-status":
        facts = _dsn_facts(message, delivery_id)
    elif kind == "feedback-report":
        facts = _arf_facts(message, delivery_id, bounce_address)
    else:
        raise ReportError(f"unknown report-type {kind!r}")
    return Report(report_key(raw), kind, tuple(facts))


def _parts(message: Message, content_type: str) -> list[Message]:
    return [p for p in message.walk() if p.get_content_type() == content_type]


def _original_headers(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if part.get_content_type() == "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                return BytesHeaderParser(policy=email.policy.compat32).parsebytes(body)
    return None


def _delivery_id(message: Message, original: Message | None, bounce_address: str) -> int:
    candidates = [str(v) for name in _VERP_HEADERS for v in message.get_all(name, [])]
    for block in _parts(message, "message/delivery-status"):
        for sub in _blocks(block):
            candidates.extend(str(v) for v in sub.get_all("X-Postfix-Sender", []))
    for part in _parts(message, "message/feedback-report"):
        candidates.extend(str(v) for v in _feedback(part).get_all("Original-Mail-From", []))
    if original is not None:
        candidates.extend(str(v) for v in original.get_all("Return-Path", []))
    if bounce_address:
        for value in candidates:
            found = read_verp(value, bounce_address)
            if found is not None:
                return found
    if original is not None:
        match = _DIGITS.fullmatch(str(original.get(_DELIVERY_HEADER) or ""))
        if match and 0 < int(match.group(1)) < 2**63:
            return int(match.group(1))
    raise ReportError("the report names none of our emails (no VERP address, no delivery id)")


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # some parsers leave it as text
        return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload)]
    return []


def _dsn_facts(message: Message, delivery_id: int) -> list[ReportFact]:
    parts = _parts(message, "message/delivery-status")
    if not parts:
        raise ReportError("a delivery-status report without a message/delivery-status part")
    facts: list[ReportFact] = []
    for block in _blocks(parts[0])[1:]:  # the first block is about the message
        action = str(block.get("Action") or "").strip().lower()
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        status = enhanced_code(str(block.get("Status") or ""))
        diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())
        if action == "delayed":
            severity = Severity.SOFT
        elif action == "failed":
            if status is None:
                raise ReportError("a failed recipient without a Status field")
            severity = classify_status(status)
        else:
            continue
        if severity is Severity.NONE:
            continue
        reason = f"dsn {action} {status or ''} {diagnostic}".strip()[:200]
        facts.append(ReportFact(severity.value, delivery_id, recipient, reason))
    if not facts:
        raise ReportError("a delivery-status report with no failed or delayed recipient")
    return facts


def _feedback(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = payload if isinstance(payload, str) else ""
    return HeaderParser().parsestr(text)


def _arf_facts(message: Message, delivery_id: int, bounce_address: str) -> list[ReportFact]:
    parts = _parts(message, "message/feedback-report")
    if not parts:
        raise ReportError("a feedback report without a message/feedback-report part")
    report = _feedback(parts[0])
    kind = str(report.get("Feedback-Type") or "").strip().lower()
    if kind not in ("abuse", "fraud"):
        raise ReportError(f"feedback type {kind!r} states no complaint")
    recipient = _address(report.get("Original-Rcpt-To"))
    agent = " ".join(str(report.get("User-Agent") or "").split())[:80]
    return [ReportFact(COMPLAINT, delivery_id, recipient, f"arf {kind} {agent}".strip())]


def _address(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).split(";", 1)[-1].strip()  # "rfc822; user@example.org"
    match = _ADDRESS.search(text)
    return match.group(1).lower() if match else None
