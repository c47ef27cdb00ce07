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
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from newsletter.api_keys import Caller, authenticate
from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import ApiKeyScope
from newsletter.web.api.errors import ApiError

log = logging.getLogger(__name__)

BEARER = HTTPBearer(auto_error=False, description="An API key from `newsletter api-key create`")
FAILED_ATTEMPTS_PER_IP = "30/minute"

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


class ApiAuth:
    """Authenticates requests against ``api_keys``; one per web app (holds the limiter)."""

    def __init__(self, app: App, *, clock: Callable[[], datetime], rate: str) -> None:
        self._app = app
        self._clock = clock
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_key = parse(rate)
        self._failures = parse(FAILED_ATTEMPTS_PER_IP)

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
            if not self._limiter.hit(self._per_key, "api-key", str(caller.id)):
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for key {caller.name!r}; slow down and retry",
                    {"Retry-After": str(self._retry_after(caller))},
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
        if not self._limiter.hit(self._failures, "api-auth-failed", ip):
            raise ApiError(
                429,
                "rate_limited",
                "too many requests without a valid API key from your address; wait a minute",
                {"Retry-After": "60"},
            )

    def _retry_after(self, caller: Caller) -> int:
        reset, _remaining = self._limiter.get_window_stats(self._per_key, "api-key", str(caller.id))
        return max(1, int(reset - time.time()) + 1)
