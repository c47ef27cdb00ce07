"""Sign and post a delivery the way each real sender does (tests only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "sources"
FRAMER_SUBMISSION = "0fbbb90e-564b-4870-ac8b-78f9bc4e44a6"
BOUNDARY = "----JotformBoundary7MA4YWxkTrZu0gW"


def sample(preset: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{preset}.json").read_text())
    return data


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def multipart(fields: dict[str, Any]) -> bytes:
    """A multipart/form-data body as Jotform posts it."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


def encode(preset: str, payload: Any) -> tuple[bytes, str]:
    if preset == "jotform":
        return multipart(payload), f"multipart/form-data; boundary={BOUNDARY}"
    return json.dumps(payload).encode(), "application/json"


def signature_headers(
    preset: str, body: bytes, secret: str, now: datetime, *, topic: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) that the sender would attach to ``body``."""
    t = str(int(now.timestamp()))
    if preset == "webflow":
        ms = str(int(now.timestamp() * 1000))
        sig = _mac(secret, ms.encode() + b":" + body).hex()
        return {"x-webflow-timestamp": ms, "x-webflow-signature": sig}, {}
    if preset == "tally":
        return {"Tally-Signature": base64.b64encode(_mac(secret, body)).decode()}, {}
    if preset == "typeform":
        return {"Typeform-Signature": "sha256=" + base64.b64encode(_mac(secret, body)).decode()}, {}
    if preset in ("formspree", "stripe"):
        name = "Formspree-Signature" if preset == "formspree" else "Stripe-Signature"
        return {name: f"t={t},v1={_mac(secret, t.encode() + b'.' + body).hex()}"}, {}
    if preset == "framer":
        sig = _mac(secret, body + FRAMER_SUBMISSION.encode()).hex()
        return {
            "Framer-Signature": f"sha256={sig}",
            "Framer-Webhook-Submission-Id": FRAMER_SUBMISSION,
        }, {}
    if preset in ("jotform", "generic-token"):
        return {}, {"token": secret}
    if preset == "shopify":
        return {
            "X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret, body)).decode(),
            "X-Shopify-Topic": topic or "customers/create",
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "X-Shopify-Shop-Domain": "backwise.myshopify.com",
        }, {}
    if preset == "woocommerce":
        return {
            "X-WC-Webhook-Signature": base64.b64encode(_mac(secret, body)).decode(),
            "X-WC-Webhook-Topic": topic or "order.created",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created",
            "X-WC-Webhook-Delivery-ID": str(uuid.uuid4()),
        }, {}
    if preset == "generic":
        return {"X-Newsletter-Signature": "sha256=" + _mac(secret, body).hex()}, {}
    raise AssertionError(preset)
