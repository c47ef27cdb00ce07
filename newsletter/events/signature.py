"""Verify SendGrid's signed event webhook (ECDSA P-256, SHA-256 over timestamp + raw body).

The only module that imports ``sendgrid``; its exceptions are translated here.

Decisions:

* A request without the signature or timestamp header is answered ``401`` (no
  credentials); a present but wrong signature, a non-base64 signature, a body that is not
  UTF-8 (SendGrid always sends UTF-8, so it cannot be genuine) or a timestamp outside the
  window is answered ``403``. SendGrid retries every non-2xx answer for 24 hours, so a
  wrongly configured key loses nothing if it is fixed within that time.
* The timestamp window is 10 minutes into the future (clock skew between SendGrid and
  us; NTP keeps real skew at seconds) and 48 hours into the past. The past bound is wide
  on purpose: SendGrid retries a failed post for up to 24 hours and does not document
  whether a retry is signed afresh, and storing is idempotent (events are deduplicated),
  so the window only has to stop replays of very old captured traffic, not of recent.
* The configured key is SendGrid's "verification key" (base64 DER SubjectPublicKeyInfo);
  PEM armour and whitespace around it are tolerated. A key that does not parse as an
  elliptic-curve public key stops start-up with a message naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from newsletter.errors import ConfigurationError, NewsletterError

SIGNATURE_HEADER: str = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER: str = EventWebhookHeader.TIMESTAMP
PUBLIC_KEY_VARIABLE = "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"

MAX_FUTURE = timedelta(minutes=10)
MAX_PAST = timedelta(hours=48)
MAX_SIGNATURE_CHARS = 512  # a DER ECDSA P-256 signature is at most 72 bytes (96 base64 chars)

_PEM_LINE = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")
_DIGITS = re.compile(r"[0-9]{1,10}")  # up to the year 2286; more overflows datetime


class SignatureError(NewsletterError):
    """The webhook request is not provably from SendGrid; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Window:
    """How far a signed timestamp may lie from our clock."""

    future: timedelta = MAX_FUTURE
    past: timedelta = MAX_PAST


class WebhookVerifier:
    """Checks one request: headers present, timestamp in the window, signature valid."""

    def __init__(self, public_key: str, *, window: Window | None = None) -> None:
        self._window = window or Window()
        self._webhook = EventWebhook()
        self._key = _load_key(self._webhook, public_key)

    def verify(
        self, body: bytes, *, signature: str | None, timestamp: str | None, now: datetime
    ) -> None:
        """Return if ``body`` was signed by SendGrid at ``timestamp``; else ``SignatureError``."""
        if not signature or not timestamp:
            raise SignatureError(
                401,
                f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header; enable "
                "'Signed Event Webhook Requests' in SendGrid's Mail Settings",
            )
        self._check_timestamp(timestamp.strip(), now=now)
        decoded = _decode_signature(signature.strip())
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError(
                403, "the body is not UTF-8; the signature does not verify"
            ) from None
        try:
            valid = self._webhook.verify_signature(
                payload, base64.b64encode(decoded).decode("ascii"), timestamp.strip(), self._key
            )
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            valid = False
        if not valid:
            raise SignatureError(
                403,
                f"the signature does not verify; check {PUBLIC_KEY_VARIABLE} against the "
                "verification key in SendGrid's Mail Settings",
            )

    def _check_timestamp(self, timestamp: str, *, now: datetime) -> None:
        if not _DIGITS.fullmatch(timestamp):
            raise SignatureError(403, f"{TIMESTAMP_HEADER} is not a Unix time: {timestamp[:40]!r}")
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        if signed_at > now + self._window.future:
            raise SignatureError(
                403, f"the signed timestamp {signed_at.isoformat()} is in the future; check clocks"
            )
        if signed_at < now - self._window.past:
            raise SignatureError(
                403,
                f"the signed timestamp {signed_at.isoformat()} is older than "
                f"{self._window.past}; replay refused",
            )


def _decode_signature(signature: str) -> bytes:
    if len(signature) > MAX_SIGNATURE_CHARS:
        raise SignatureError(403, f"{SIGNATURE_HEADER} is too long to be a signature")
    try:
        decoded = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(403, f"{SIGNATURE_HEADER} is not base64") from None
    if not decoded:
        raise SignatureError(403, f"{SIGNATURE_HEADER} is empty")
    return decoded


def _load_key(webhook: EventWebhook, public_key: str) -> EllipticCurvePublicKey:
    """Parse the configured key with the SDK; ``ConfigurationError`` if it is not EC."""
    body = "".join(_PEM_LINE.sub("", public_key).split())
    try:
        key = webhook.convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, EllipticCurvePublicKey):
        raise ConfigurationError(
            PUBLIC_KEY_VARIABLE,
            "not an elliptic-curve public key; paste the 'Verification Key' shown in "
            "SendGrid's Mail Settings > Signed Event Webhook",
        )
    return key
