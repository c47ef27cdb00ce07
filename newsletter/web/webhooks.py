"""``POST /webhooks/sendgrid``: SendGrid's signed event webhook.

Answers (SendGrid retries anything that is not 2xx for 24 hours):

* ``200`` with counts, only after the batch is committed;
* ``401`` no signature headers, ``403`` a signature or timestamp that does not verify
  (details in ``newsletter.events.signature``); nothing is stored;
* ``400`` a verified body that is not a JSON array; ``413`` a body over ``MAX_BODY_BYTES``;
* ``404`` with a message naming ``NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY`` while that key
  is not set: the route is documented but not enabled, nothing is stored, and SendGrid
  keeps the events and retries for a day, so configuring the key soon loses nothing. (Not
  503: nothing here is temporarily down, and no input may make the service answer 5xx
  while it is healthy.)
* ``503`` with ``Retry-After`` when the database is unreachable or busy.

``MAX_BODY_BYTES`` is 8 MiB: SendGrid flushes a batch at about 768 KB or every 30 seconds,
so a tenfold margin, while a post far larger than any real batch is refused early.
The signature check, parsing and the database work run in the thread pool, never on
the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool

from newsletter.app import App
from newsletter.events.parsing import EventPayloadError, parse_batch
from newsletter.events.signature import (
    PUBLIC_KEY_VARIABLE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    WebhookVerifier,
)
from newsletter.events.store import IngestReport, ingest
from newsletter.web.body import read_body
from newsletter.web.form_input import BadRequest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
PATH = "/webhooks/sendgrid"

RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Stored (counts of stored, duplicate, ignored events)"},
    400: {"description": "The verified body is not a JSON array of events"},
    401: {"description": "Signature headers missing"},
    403: {"description": "Signature or timestamp does not verify"},
    413: {"description": "Body too large"},
    404: {"description": "Not enabled: no verification key configured"},
    503: {"description": "Database unavailable; retry"},
}

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "timestamp"],
    "properties": {
        "event": {"type": "string", "example": "delivered"},
        "email": {"type": "string"},
        "timestamp": {"type": "integer"},
        "sg_event_id": {"type": "string"},
        "sg_message_id": {"type": "string"},
        "delivery_id": {"type": "string", "description": "our custom_args"},
    },
}

OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}}},
    },
    "parameters": [
        {"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
    ],
}


def sendgrid_webhook_router(
    app: App, *, clock: Callable[[], datetime], max_body_bytes: int = MAX_BODY_BYTES
) -> APIRouter:
    """The route over one ``App``. A bad public key raises ``ConfigurationError`` here."""
    router = APIRouter()
    key = app.settings.sendgrid_webhook_public_key.strip()
    verifier = WebhookVerifier(key) if key else None

    @router.post(PATH, responses=RESPONSES, openapi_extra=OPENAPI_EXTRA)
    async def sendgrid_events(request: Request) -> JSONResponse:
        """SendGrid's signed event webhook: verify, store each event once, act on it."""
        if verifier is None:
            return _error(
                404,
                f"the SendGrid event webhook is not enabled: set {PUBLIC_KEY_VARIABLE} to the "
                "verification key from SendGrid's Mail Settings",
            )
        try:
            body = await read_body(request, max_body_bytes)
        except BadRequest as exc:
            return _error(exc.status, exc.message)
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        try:
            report = await run_in_threadpool(
                _handle, app, verifier, body, signature, timestamp, clock
            )
        except SignatureError as exc:
            log.warning("sendgrid webhook refused (%d): %s", exc.status, exc.message)
            return _error(exc.status, exc.message)
        except EventPayloadError as exc:
            return _error(400, str(exc))
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            log.error("sendgrid webhook: database unavailable: %s", exc)
            return _error(503, "the database is unavailable; SendGrid will retry", retry=True)
        except IntegrityError:
            # Only a race with a concurrent writer gets here; the retry finds the rows.
            log.exception("sendgrid webhook: conflicting concurrent write; answered 503")
            return _error(503, "a concurrent write conflicted; SendGrid will retry", retry=True)
        return JSONResponse({"status": "ok", **report.as_dict()})

    return router


def _handle(
    app: App,
    verifier: WebhookVerifier,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    clock: Callable[[], datetime],
) -> IngestReport:
    now = clock()
    verifier.verify(body, signature=signature, timestamp=timestamp, now=now)
    return ingest(app, parse_batch(body), now=now)


def _error(status: int, message: str, *, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": "60"} if retry else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
