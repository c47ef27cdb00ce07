"""The API's auth dependency: ``Authorization: Bearer <key>``, scope check, rate limit.

Reusable by any router mounted under ``/api/v1``::

    router = APIRouter(dependencies=[Depends(context.auth.require(ApiKeyScope.WRITE))])

or per route ``caller: Annotated[Caller, Depends(context.auth.require(ApiKeyScope.READ))]``.
A missing, wrong or revoked key is 401; a read key on a write route is 403; more requests
than ``NEWSLETTER_API_RATE_LIMIT`` for one key is 429 with ``Retry-After``. Failed
attempts are limited per client address too. The key itself is never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from newsletter.api_keys import Caller, authenticate
from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import ApiKeyScope
from newsletter.web.api.errors import ApiError
from newsletter.web.rate_limit import MovingWindow, read_limits

log = logging.getLogger(__name__)

BEARER = HTTPBearer(auto_error=False, description="An API key from `newsletter api-key create`")
FAILED_ATTEMPTS_PER_IP = "30/minute"

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


class ApiAuth:
    """Authenticates requests against ``api_keys``; one per web app (holds the limiters).

    ``rate``: every limit of it counts (``10/minute;1000/day``). ``monotonic``: the clock
    of the limiters (seconds), a parameter so tests can move it."""

    def __init__(
        self,
        app: App,
        *,
        clock: Callable[[], datetime],
        rate: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._clock = clock
        self._monotonic = monotonic
        self._per_key = MovingWindow(read_limits(rate))  # key: the API key's id
        self._failures = MovingWindow(read_limits(FAILED_ATTEMPTS_PER_IP))  # key: client IP

    def require(self, scope: ApiKeyScope) -> Callable[..., Awaitable[Caller]]:
        """A FastAPI dependency that returns the ``Caller`` or raises 401/403/429."""

        async def dependency(request: Request, credentials: BearerCredentials) -> Caller:
            ip = request.client.host if request.client else "unknown"
            if credentials is None or credentials.scheme.lower() != "bearer":
                self._failed(ip)
                raise ApiError(
                    401,
                    "unauthorized",
                    "send an API key as 'Authorization: Bearer <key>' "
                    "(create one with `newsletter api-key create NAME`)",
                    {"WWW-Authenticate": "Bearer"},
                )
            caller = await run_in_threadpool(self._lookup, credentials.credentials)
            if caller is None:
                self._failed(ip)
                raise ApiError(
                    401,
                    "unauthorized",
                    "the API key is wrong or revoked; check it or create a new one with "
                    "`newsletter api-key create NAME`",
                    {"WWW-Authenticate": "Bearer"},
                )
            now = self._monotonic()
            if not self._per_key.hit(str(caller.id), now=now):
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for key {caller.name!r}; slow down and retry",
                    {"Retry-After": str(self._retry_after(caller, now))},
                )
            if not caller.may(scope):
                raise ApiError(
                    403,
                    "forbidden",
                    f"key {caller.name!r} has the read scope; this needs a write key "
                    "(`newsletter api-key create NAME --scope write`)",
                )
            return caller

        return dependency

    def _lookup(self, secret: str) -> Caller | None:
        with transaction(self._app.sessions) as session:
            return authenticate(session, secret, now=self._clock())

    def _failed(self, ip: str) -> None:
        if not self._failures.hit(ip, now=self._monotonic()):
            raise ApiError(
                429,
                "rate_limited",
                "too many requests without a valid API key from your address; wait a minute",
                {"Retry-After": "60"},
            )

    def _retry_after(self, caller: Caller, now: float) -> int:
        return max(1, int(self._per_key.retry_after(str(caller.id), now=now)) + 1)
