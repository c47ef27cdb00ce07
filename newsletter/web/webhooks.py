"""``POST /webhooks/sendgrid``: SendGrid's signed event webhook.

Answers (SendGrid retries anything that is not 2xx for 24 hours):

* ``200`` ``{"status": "accepted"}`` once the verified body is committed to
  the event inbox (``newsletter.events.inbox``); the events are parsed, stored once and
  acted on by the drain right after the answer: under ``newsletter serve`` in its
  background process (``RemoteDrain``: a byte on its pipe wakes it), so the drain never
  competes with requests for this interpreter; without one (a test client) in a thread of
  this process (``EventDrain``). The worker's ``events`` job catches up on anything left;
* ``401`` no signature headers, ``403`` a signature or timestamp that does not verify
  (details in ``newsletter.events.signature``); nothing is stored;
* ``400`` a verified body that is not shaped like a JSON array (nothing stored: no retry
  can fix it); one that is shaped like one but is not valid JSON inside is accepted and
  kept aside, with its problem, by the drain (``newsletter events inbox`` lists it);
  ``413`` a body over ``MAX_BODY_BYTES``;
* ``404`` with a message naming ``NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY`` while that key
  is not set: the route is documented but not enabled, nothing is stored, and SendGrid
  keeps the events and retries for a day, so configuring the key soon loses nothing. (Not
  503: nothing here is temporarily down, and no input may make the service answer 5xx
  while it is healthy.)
* ``503`` with ``Retry-After`` when the database is unreachable or busy.

``MAX_BODY_BYTES`` is 8 MiB: SendGrid flushes a batch at about 768 KB or every 30 seconds,
so a tenfold margin, while a post far larger than any real batch is refused early.
The signature check, the JSON check and the insert run in the thread pool, never on the
event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from newsletter.app import App
from newsletter.errors import NewsletterError
from newsletter.events.inbox import accept, check_body, drain
from newsletter.events.parsing import EventPayloadError
from newsletter.events.signature import (
    PUBLIC_KEY_VARIABLE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    WebhookVerifier,
)
from newsletter.wakeups import DRAIN_YIELD_SECONDS
from newsletter.web.body import read_body
from newsletter.web.form_input import BadRequest
from newsletter.web.pump import Pump

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
PATH = "/webhooks/sendgrid"

RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Accepted: committed to the event inbox, applied right after"},
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


class EventWakeups(Protocol):
    """Another process's drain (``BackgroundProcess``), told what the route does."""

    def wake_events(self) -> None:
        """A body was committed to the inbox."""

    def webhooks_busy(self, busy: bool) -> None:
        """Webhook requests started being answered (True) / none is any more (False)."""


class RemoteDrain:
    """The event inbox drained by serve's background process: the route tells it when
    webhook requests start and stop being answered (only the changes: it defers to them,
    as ``EventDrain`` does) and when a body was committed (it drains)."""

    def __init__(self, wakeups: EventWakeups) -> None:
        self.in_flight = 0
        self._wakeups = wakeups

    def started(self) -> None:
        self.in_flight += 1
        if self.in_flight == 1:
            self._wakeups.webhooks_busy(True)

    def finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._wakeups.webhooks_busy(False)

    def accepted(self) -> BackgroundTask | None:
        self._wakeups.wake_events()  # never blocks
        return None


class EventDrain:
    """The web process's drain of the event inbox when no background process drains it:
    a ``Pump`` whose pass applies every pending body, deferring to webhook requests being
    answered before each one (at most ``DRAIN_YIELD_SECONDS``)."""

    def __init__(self, app: App, *, clock: Callable[[], datetime]) -> None:
        self.in_flight = 0  # webhook requests being answered: the drain defers to them
        self._stopping = False
        self._app = app
        self._clock = clock
        self.pump = Pump(
            self._run,
            busy=self._busy,
            yield_seconds=DRAIN_YIELD_SECONDS,
            name="sendgrid-events",
        )

    def started(self) -> None:
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1

    def accepted(self) -> BackgroundTask | None:
        # Applied by the drain's thread; the background task only waits for that pass, so
        # the events are applied by the time the ASGI cycle ends (tests rely on it).
        # SendGrid has its answer before: the response is complete when this task starts.
        return BackgroundTask(self.pump.wait, self.pump.signal())

    def close(self) -> None:
        """Shutting down: the pass under way ends after its current transaction (the rest
        stays pending for the next process or the ``events`` job), then the thread stops."""
        self._stopping = True
        self.pump.close()

    def _busy(self) -> bool:
        return self.in_flight > 0

    def _run(self, pause: Callable[[], None]) -> None:
        # One drain: several on PostgreSQL were measured slower here (they queue on the
        # same subscribers' and deliveries' row locks).
        try:
            drain(
                self._app,
                now=self._clock(),
                pause=pause,
                busy=self._busy,
                stop=lambda: self._stopping,
            )
        except (NewsletterError, SQLAlchemyError):
            # The pump's thread must live on; the bodies stay pending for the next pass
            # or the worker's ``events`` job.
            log.exception("sendgrid event inbox: drain failed; the events job retries")


def sendgrid_webhook_router(
    app: App,
    *,
    clock: Callable[[], datetime],
    events: EventDrain | RemoteDrain,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> APIRouter:
    """The route over one ``App``, telling ``events`` (this process's drain or another's)
    about each request and each accepted body. A bad public key raises
    ``ConfigurationError`` here."""
    router = APIRouter()
    key = app.settings.sendgrid_webhook_public_key.strip()
    verifier = WebhookVerifier(key) if key else None

    @router.post(PATH, responses=RESPONSES, openapi_extra=OPENAPI_EXTRA)
    async def sendgrid_events(request: Request) -> JSONResponse:
        """SendGrid's signed event webhook: verify, keep the body, apply its events soon."""
        events.started()
        try:
            return await _sendgrid_events(request)
        finally:
            events.finished()

    async def _sendgrid_events(request: Request) -> JSONResponse:
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
            await run_in_threadpool(_handle, app, verifier, body, signature, timestamp, clock)
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
        return JSONResponse({"status": "accepted"}, background=events.accepted())

    return router


def _handle(
    app: App,
    verifier: WebhookVerifier,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    clock: Callable[[], datetime],
) -> None:
    now = clock()
    verifier.verify(body, signature=signature, timestamp=timestamp, now=now)
    check_body(body)
    accept(app, body, now=now)


def _error(status: int, message: str, *, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": "60"} if retry else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
