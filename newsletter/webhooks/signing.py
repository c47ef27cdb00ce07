"""The ``Newsletter-Signature`` header (pure).

``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, keyed with the secret exactly
as printed by ``webhook add``. While a rotated-out secret is still valid, one ``v1`` per
secret is sent (newest first): a receiver accepts the request if any of them matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "Newsletter-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header value: ``t=...`` then one ``v1=...`` per secret, in the order given."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    parts = [f"t={timestamp}"] + [f"v1={signature(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)
