"""``GET /t/o/{token}`` (open pixel) and ``GET /t/c/{token}`` (click redirect).

Both also answer HEAD (recorded as a machine). A forged, altered or unknown token is a
404 with a short message and never a redirect; the redirect target is the original URL
stored with the email (``newsletter.tracking.hits``). Nothing is cached by proxies.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from newsletter.app import App
from newsletter.errors import TokenError
from newsletter.tracking.hits import record_click, record_open

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
NOT_FOUND = "This link is not valid."
TRAP_PAGE = "Nothing here."


def tracking_router(app: App, *, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()
    # ``{token:path}``: a token with an encoded slash (``0%2F``) reaches the handler and is
    # refused (404) like any bad token, instead of matching no route and being redirected
    # by the slash rule (307 to another URL).

    # ``/t/o`` and ``/t/c`` (no token: what a client makes of ``/t/o/.``) are a 404 too,
    # not a 307 to ``/t/o/`` by the same rule.
    @router.api_route("/t/o", methods=["GET", "HEAD"], include_in_schema=False)
    @router.api_route("/t/c", methods=["GET", "HEAD"], include_in_schema=False)
    async def no_token() -> Response:
        return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)

    def facts(request: Request) -> tuple[str, str, str | None]:
        ip = request.client.host if request.client else None
        return request.method, request.headers.get("user-agent", ""), ip

    @router.head("/t/o/{token:path}", response_class=Response, include_in_schema=False)
    @router.get(
        "/t/o/{token:path}",
        response_class=Response,
        responses={200: {"description": "A 1x1 GIF"}, 404: {"description": "Unknown token"}},
    )
    async def open_pixel(token: str, request: Request) -> Response:
        """Open tracking pixel (only in emails sent with NEWSLETTER_TRACK_OPENS)."""
        try:
            method, agent, ip = facts(request)
            await run_in_threadpool(
                record_open, app, token, method=method, user_agent=agent, ip=ip, now=clock()
            )
        except TokenError:
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @router.head("/t/c/{token:path}", response_class=Response, include_in_schema=False)
    @router.get(
        "/t/c/{token:path}",
        response_class=Response,
        responses={
            302: {"description": "To the link's original URL"},
            404: {"description": "Unknown token"},
        },
    )
    async def click(token: str, request: Request) -> Response:
        """Click tracking: 302 to the original URL of that email's link."""
        try:
            method, agent, ip = facts(request)
            url = await run_in_threadpool(
                record_click, app, token, method=method, user_agent=agent, ip=ip, now=clock()
            )
        except TokenError:
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)
        if url is None:  # the trap link: no target, ever
            return PlainTextResponse(TRAP_PAGE, headers=NO_STORE)
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    return router
