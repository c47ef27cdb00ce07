"""Each sender's own signature scheme, as pure functions over the raw request.

Every verifier takes the source's secrets (newest first; every one verifies, so a rotated
secret keeps working until the sender has the new one), the raw body, the request headers
(lower-case names), the query string and ``now``; it returns nothing or raises
``Unauthorized`` (answered 401, nothing written).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.errors import NewsletterError

TOLERANCE_SECONDS = 300


class Unauthorized(NewsletterError, PermissionError):
    """A missing, malformed or wrong signature or token; the message never holds a secret."""


@dataclass(frozen=True)
class Inbound:
    """The parts of a request a verifier may read."""

    body: bytes
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]


Verifier = Callable[[Sequence[str], Inbound, datetime], None]


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _matches(given: bytes, secrets: Sequence[str], message: bytes) -> bool:
    return any(hmac.compare_digest(_mac(secret, message), given) for secret in secrets)


def _header(request: Inbound, name: str) -> str:
    value = request.headers.get(name.lower(), "").strip()
    if not value:
        raise Unauthorized(f"the {name} header is missing; this source only takes signed posts")
    return value


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise Unauthorized(f"the {name} header is not base64") from None


def _hex(value: str, name: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Unauthorized(f"the {name} header is not hex") from None


def _check_time(seconds: float, now: datetime, name: str) -> None:
    if abs(now.timestamp() - seconds) > TOLERANCE_SECONDS:
        raise Unauthorized(
            f"the {name} timestamp is more than {TOLERANCE_SECONDS} seconds from our clock "
            "(a replayed or delayed delivery); check the server clock"
        )


def body_hmac(name: str, *, encoding: str, prefix: str = "") -> Verifier:
    """HMAC-SHA256 of the raw body in header ``name`` (base64 or hex, optional prefix)."""

    def verify(secrets: Sequence[str], request: Inbound, now: datetime) -> None:
        value = _header(request, name)
        if prefix:
            if not value.startswith(prefix):
                raise Unauthorized(f"the {name} header must start with {prefix!r}")
            value = value[len(prefix) :]
        given = _b64(value, name) if encoding == "base64" else _hex(value, name)
        if not _matches(given, secrets, request.body):
            raise Unauthorized(f"the {name} signature does not match the body")

    return verify


def framer(secrets: Sequence[str], request: Inbound, now: datetime) -> None:
    """``Framer-Signature: sha256=<hex HMAC of body + submission id>``."""
    submission = _header(request, "Framer-Webhook-Submission-Id")
    value = _header(request, "Framer-Signature")
    if not value.startswith("sha256="):
        raise Unauthorized("the Framer-Signature header must start with 'sha256='")
    given = _hex(value.removeprefix("sha256="), "Framer-Signature")
    if not _matches(given, secrets, request.body + submission.encode("utf-8")):
        raise Unauthorized("the Framer-Signature signature does not match the body")


def webflow(secrets: Sequence[str], request: Inbound, now: datetime) -> None:
    """``x-webflow-signature``: hex HMAC of ``<timestamp ms>:<body>``; five-minute window."""
    stamp = _header(request, "x-webflow-timestamp")
    if not stamp.isdigit() or len(stamp) > 16:
        raise Unauthorized("the x-webflow-timestamp header is not a millisecond timestamp")
    given = _hex(_header(request, "x-webflow-signature"), "x-webflow-signature")
    _check_time(int(stamp) / 1000, now, "x-webflow-timestamp")
    if not _matches(given, secrets, stamp.encode() + b":" + request.body):
        raise Unauthorized("the x-webflow-signature signature does not match the body")


def timestamped(name: str) -> Verifier:
    """``<name>: t=<unix>,v1=<hex>[,v1=...]``: hex HMAC of ``<t>.<body>`` (Stripe, Formspree)."""

    def verify(secrets: Sequence[str], request: Inbound, now: datetime) -> None:
        stamp, signatures = "", []
        for part in _header(request, name).split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                stamp = value
            elif key == "v1":
                signatures.append(value)
        if not stamp.isdigit() or len(stamp) > 12 or not signatures:
            raise Unauthorized(f"the {name} header must look like t=<unix time>,v1=<hex>")
        _check_time(int(stamp), now, name)
        message = stamp.encode() + b"." + request.body
        for signature in signatures:
            try:
                given = bytes.fromhex(signature)
            except ValueError:
                continue
            if _matches(given, secrets, message):
                return
        raise Unauthorized(f"no {name} signature matches the body")

    return verify


def url_token(secrets: Sequence[str], request: Inbound, now: datetime) -> None:
    """``?token=<secret>`` in the URL, for senders that cannot sign (Jotform)."""
    given = request.query.get("token", "")
    if not given:
        raise Unauthorized("the ?token= query parameter is missing; add it to the webhook URL")
    if not any(hmac.compare_digest(given.encode(), s.encode()) for s in secrets):
        raise Unauthorized("the ?token= query parameter is wrong")


SHOPIFY = body_hmac("X-Shopify-Hmac-Sha256", encoding="base64")
WOOCOMMERCE = body_hmac("X-WC-Webhook-Signature", encoding="base64")
TALLY = body_hmac("Tally-Signature", encoding="base64")
TYPEFORM = body_hmac("Typeform-Signature", encoding="base64", prefix="sha256=")
NEWSLETTER = body_hmac("X-Newsletter-Signature", encoding="hex", prefix="sha256=")
STRIPE = timestamped("Stripe-Signature")
FORMSPREE = timestamped("Formspree-Signature")
