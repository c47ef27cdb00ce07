"""``GET /keep/{token}`` (a page with one button, changes nothing: mail scanners follow
links) and ``POST /keep/{token}`` (keeps the subscriber: the sunset email's keep button)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from newsletter.app import App
from newsletter.errors import TokenError
from newsletter.sunset import keep_subscribed, subscriber_for_keep_token
from newsletter.web.openapi import TOKEN_FORM_BODY
from newsletter.web.pages import page

INVALID = "This link is not valid"


def keep_router(app: App, *, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()

    @router.get("/keep/{token}", response_class=Response)
    def keep_page(token: str, request: Request) -> Response:
        """Shows a "Keep sending" button; changes nothing."""
        try:
            subscriber_for_keep_token(app, token)
        except TokenError as exc:
            return page(INVALID, str(exc), status=400)
        return page(
            "Keep getting our emails?",
            "One click and we keep writing to you.",
            action=str(request.url.path),
            button="Keep sending them",
        )

    @router.post("/keep/{token}", response_class=Response, openapi_extra=TOKEN_FORM_BODY)
    async def keep_route(token: str, request: Request) -> Response:
        """Keeps the subscriber (a human engagement); an inactive one is active again."""
        ip = request.client.host if request.client else None
        try:
            status = await run_in_threadpool(keep_subscribed, app, token, ip=ip, now=clock())
        except TokenError as exc:
            return page(INVALID, str(exc), status=400)
        if status == "active":
            return page("Thank you", "We will keep sending you our emails.")
        return page(
            "You are not subscribed",
            "This address no longer gets our emails; subscribe again to come back.",
        )

    return router
