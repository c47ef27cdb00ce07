"""``ApiRoute``: API routes whose typed errors become enveloped 4xx answers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError, OperationalError

from newsletter.automation.use_cases import EventIdConflict
from newsletter.content.library import SequenceNotFound
from newsletter.errors import (
    InvalidAttributes,
    InvalidEmailError,
    NewsletterError,
    SubscriberConflict,
    SubscriberNotFound,
    TriggerError,
    WebhookError,
)
from newsletter.subscriber_updates import InvalidField
from newsletter.web.api.errors import error_response
from newsletter.web.body import read_body
from newsletter.web.form_input import BadRequest

log = logging.getLogger(__name__)


def translate(exc: NewsletterError) -> Response:
    """Our typed errors as API answers (never a 500, never a traceback)."""
    if isinstance(exc, SubscriberNotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, SequenceNotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, InvalidEmailError):
        return error_response(422, "invalid_email", f"{exc.email[:80]!r}: {exc.reason}")
    if isinstance(exc, InvalidAttributes):
        return error_response(422, "invalid_attributes", str(exc))
    if isinstance(exc, InvalidField):
        return error_response(422, f"invalid_{exc.field}", str(exc))
    if isinstance(exc, SubscriberConflict):
        return error_response(409, exc.status if exc.status else "conflict", str(exc))
    if isinstance(exc, EventIdConflict):
        return error_response(409, "event_id_reused", str(exc))
    if isinstance(exc, TriggerError):
        return error_response(422, "invalid_event", str(exc))
    if isinstance(exc, WebhookError):
        status = 404 if isinstance(exc, LookupError) else 422
        return error_response(status, "not_found" if status == 404 else "invalid_webhook", str(exc))
    log.warning("API request refused: %s", exc)
    return error_response(400, "bad_request", str(exc))


class ApiRoute(APIRoute):
    """Routes that turn ``NewsletterError`` and database trouble into enveloped 4xx/503.

    With ``max_body_bytes`` (``capped_route``) the body is read first, counting the bytes
    as they arrive: a body over the cap is a 413 whether or not it declared a
    Content-Length (a chunked body has none), and FastAPI then parses the bytes read."""

    max_body_bytes: int | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        limit = self.max_body_bytes

        async def handler(request: Request) -> Response:
            if limit is not None:
                try:
                    await read_body(request, limit)
                except BadRequest as exc:
                    code = "too_large" if exc.status == 413 else "bad_request"
                    return error_response(exc.status, code, exc.message)
            try:
                return await original(request)
            except NewsletterError as exc:
                return translate(exc)
            except IntegrityError as exc:
                log.warning("API write conflict, answered 409 so the caller retries: %s", exc.orig)
                return error_response(409, "conflict", "a concurrent change won; retry")
            except OperationalError as exc:
                log.error("database unavailable: %s", exc.orig)
                return error_response(503, "unavailable", "the database is unavailable; retry")

        return handler


@functools.cache
def capped_route(limit: int) -> type[ApiRoute]:
    """``ApiRoute`` refusing bodies over *limit* bytes (one class per limit)."""
    return type("CappedApiRoute", (ApiRoute,), {"max_body_bytes": limit})
