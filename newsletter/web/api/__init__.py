"""The REST API under ``/api/v1`` (in ``/openapi.json``): JSON in and out, errors as
``{"error": {"code", "message"}}``, cursor pagination, ``Authorization: Bearer <key>``.

Adding a router (e.g. ``/api/v1/webhooks``): write ``def webhooks_router(ctx: ApiContext)
-> APIRouter`` in its own module under ``newsletter/web/api/``, protect it with
``ctx.router(prefix="/webhooks", dependencies=[Depends(ctx.write)])`` (or per route
``Depends(ctx.read)`` / ``Depends(ctx.write)``), and append the factory to ``ROUTERS``
below. Raise ``ApiError(status, code, message)`` or a ``NewsletterError`` (translated in
``ApiRoute``) for errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, FastAPI

from newsletter.app import App
from newsletter.web.api.auth import ApiAuth
from newsletter.web.api.catalog import catalog_router
from newsletter.web.api.context import ApiContext
from newsletter.web.api.errors import install_error_handlers
from newsletter.web.api.events import events_router
from newsletter.web.api.routing import ApiRoute
from newsletter.web.api.subscribers import subscribers_router
from newsletter.web.api.webhooks import webhooks_router

PREFIX = "/api/v1"
RouterFactory = Callable[[ApiContext], APIRouter]
ROUTERS: list[RouterFactory] = [
    subscribers_router,
    events_router,
    catalog_router,
    webhooks_router,
]


def mount_api(
    web: FastAPI,
    app: App,
    *,
    clock: Callable[[], datetime],
    monotonic: Callable[[], float] = time.monotonic,
) -> ApiContext:
    """Add every ``ROUTERS`` router under ``/api/v1`` and the API's error handlers;
    ``monotonic`` is the rate limits' clock (seconds)."""
    auth = ApiAuth(app, clock=clock, rate=app.settings.api_rate_limit, monotonic=monotonic)
    ctx = ApiContext(app=app, clock=clock, auth=auth)
    # Every route comes from ``ctx.router``: its class reads the body under the size cap.
    api = APIRouter(prefix=PREFIX, route_class=ApiRoute)
    for factory in ROUTERS:
        api.include_router(factory(ctx))
    web.include_router(api)
    install_error_handlers(web)
    return ctx
