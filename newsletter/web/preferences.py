"""The preference centre: ``GET/POST /preferences/{token}``, also shown by
``GET /unsubscribe/{token}`` above its Unsubscribe button.

Works without JavaScript (two plain forms). CSRF: the token in the URL is the only
credential and no cookie is ever set, so a forged cross-site post would need the token;
a post that says it comes from another site (``Origin`` not ours, or
``Sec-Fetch-Site: cross-site``) is refused with 403 anyway. Every bad post is a 4xx and
writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from newsletter.app import App
from newsletter.attention.policy import FREQUENCIES
from newsletter.errors import PreferencesError, TokenError
from newsletter.preferences import PreferencesView, load_preferences, save_preferences
from newsletter.web.body import read_body
from newsletter.web.form_input import BadRequest
from newsletter.web.pages import page

MAX_BODY = 8 * 1024
FIELDS = ("topic", "frequency")
FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "topic": {"type": "array", "items": {"type": "string"}},
                        "frequency": {"type": "string", "enum": list(FREQUENCIES)},
                    },
                    "required": ["frequency"],
                }
            }
        },
    },
    "responses": {
        "400": {"description": "Unknown topic, frequency or field, or a bad link"},
        "403": {"description": "Sent from another site"},
        "413": {"description": "Body too large"},
        "415": {"description": "Not a url-encoded form"},
    },
}

_env = Environment(
    loader=PackageLoader("newsletter.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_template = _env.get_template("preferences.html")


def render(
    view: PreferencesView,
    *,
    token: str,
    unsubscribe_action: str | None,
    notice: str = "",
    title: str = "Choose what you get",
) -> HTMLResponse:
    html = _template.render(
        title=title,
        view=view,
        notice=notice,
        preferences_action=f"/preferences/{token}",
        unsubscribe_action=unsubscribe_action,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def unsubscribe_with_preferences(app: App, token: str, *, action: str) -> Response | None:
    """The unsubscribe page with the preference form above its button; None when there is
    nothing to choose (a forgotten subscriber): the plain unsubscribe page is shown."""
    try:
        view = load_preferences(app, token)
    except TokenError:
        return None
    return render(view, token=token, unsubscribe_action=action, title="Unsubscribe, or get less")


def parse_form(request: Request, body: bytes, *, base_url: str) -> tuple[list[str], str]:
    """``topic`` (repeated) and one ``frequency`` from a url-encoded body; 4xx otherwise."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        raise BadRequest(403, "This form can only be sent from its own page.")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and origin.rstrip("/") != _origin(base_url):
        raise BadRequest(403, "This form can only be sent from its own page.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest(415, "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "the form could not be read; reload the page and try again") from None
    unknown = [k for k, _ in pairs if k not in FIELDS]
    if unknown:
        raise BadRequest(400, f"unknown field {unknown[0][:40]!r}; reload the page and try again")
    frequencies = [v for k, v in pairs if k == "frequency"]
    if len(frequencies) != 1:
        raise BadRequest(400, "choose one frequency")
    topics = [v for k, v in pairs if k == "topic"]
    if len(set(topics)) != len(topics):
        raise BadRequest(400, "a topic was sent twice; reload the page and try again")
    return topics, frequencies[0]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def preferences_router(app: App, *, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()

    @router.get("/preferences/{token}", response_class=Response)
    def preferences_page(token: str) -> Response:
        """Topics with checkboxes and a frequency choice; changes nothing."""
        try:
            view = load_preferences(app, token)
        except TokenError as exc:
            return page("This link is not valid", str(exc), status=400)
        return render(view, token=token, unsubscribe_action=f"/unsubscribe/{token}")

    @router.post("/preferences/{token}", response_class=Response, openapi_extra=FORM_BODY)
    async def save_route(token: str, request: Request) -> Response:
        """Saves the topics and the frequency; a consent event records each change."""
        body = await read_body(request, MAX_BODY)
        topics, frequency = parse_form(request, body, base_url=app.settings.base_url)
        try:
            view = await run_in_threadpool(
                save_preferences,
                app,
                token,
                topics_on=topics,
                frequency=frequency,
                ip=request.client.host if request.client else None,
                now=clock(),
            )
        except TokenError as exc:
            return page("This link is not valid", str(exc), status=400)
        except PreferencesError as exc:
            return page("Your choices were not saved", str(exc), status=400)
        return render(
            view,
            token=token,
            unsubscribe_action=f"/unsubscribe/{token}",
            notice="Saved. From now on you get only what you chose.",
        )

    return router
