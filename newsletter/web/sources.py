"""``POST /subscribe/{source}``: one route per source of ``sources.yaml``.

Answers a sender can live with (none of them retries forever):

* ``202`` accepted (a confirmation email, or active at once for a consented checkout);
* ``200`` ``ignored`` with the reason, for an authentic delivery with nothing to act on
  (no email, no consent, another event type, WooCommerce's activation ping), and
  ``duplicate`` for an event id already acted on; nothing is written for either;
* ``401`` a missing or wrong signature or token; ``404`` an unknown or unconfigured source;
* ``400`` a broken body; ``413`` over the source's ``max_body_bytes``; ``429`` over the
  source's ``rate_limit`` (per source, not per IP: a sender posts from a few addresses).

No honeypot here: a business form's genuine ``website`` field is data, not a bot trap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from newsletter.app import App
from newsletter.sources.config import SourceConfig
from newsletter.sources.decide import check_authentic, is_activation_ping, read_delivery
from newsletter.sources.intake import take
from newsletter.sources.loading import load_sources, source_secrets
from newsletter.sources.presets import PRESETS
from newsletter.sources.safe_json import BodyError
from newsletter.sources.verify import Inbound, Unauthorized
from newsletter.subscriptions import SubscribeOutcome
from newsletter.web.body import read_body, read_fields
from newsletter.web.form_input import BadRequest
from newsletter.web.rate_limit import MovingWindow, read_limits

log = logging.getLogger(__name__)

RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Authentic, but ignored (reason given) or a repeated event id"},
    202: {"description": "Accepted: pending with a confirmation email, or active at once"},
    400: {"description": "Broken body"},
    401: {"description": "Missing or wrong signature or token"},
    404: {"description": "No such source, or its secret is not configured"},
    413: {"description": "Body over the source's max_body_bytes"},
    415: {"description": "Unsupported content type (form presets)"},
    429: {"description": "Over the source's rate_limit"},
    503: {"description": "Database unavailable; retry"},
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def sources_router(
    app: App,
    *,
    clock: Callable[[], datetime],
    kick: Callable[[], None] = lambda: None,
    environ: Mapping[str, str] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """The route over ``app``'s sources file. A bad file raises ``ContentError`` here.

    Each source's ``rate_limit`` is one moving window (every limit of it counts) over
    ``monotonic`` (seconds: a parameter so tests can move the clock)."""
    router = APIRouter()
    sources = load_sources(app.settings.sources_file)
    secrets = {name: source_secrets(source, environ) for name, source in sources.items()}
    windows = {name: MovingWindow(read_limits(c.rate_limit)) for name, c in sources.items()}

    @router.post("/subscribe/{source}", responses=RESPONSES)
    async def subscribe_from_source(source: str, request: Request) -> JSONResponse:
        """A form service or shop posting a signup, verified with the sender's scheme."""
        config = sources.get(source)
        if config is None:
            return _answer(404, error=f"no source {source[:64]!r} in the sources file")
        if not secrets[source]:
            return _answer(404, error=f"source {source!r} is not enabled: set {config.secret_env}")
        if not windows[source].hit(source, now=monotonic()):
            return _answer(429, error=f"too many posts to source {source!r}; retry in a minute")
        try:
            body = await read_body(request, config.max_body_bytes)
            inbound = Inbound(
                body=body,
                headers={k.lower(): v for k, v in request.headers.items()},
                query=dict(request.query_params),
            )
            fields = await _form_fields(config, request, body)
        except BadRequest as exc:
            return _answer(exc.status, error=exc.message)
        return await run_in_threadpool(
            _handle, app, config, secrets[source], inbound, fields, clock, kick
        )

    return router


async def _form_fields(
    config: SourceConfig, request: Request, body: bytes
) -> dict[str, Any] | None:
    """Decoded form fields for form presets (Jotform posts multipart); None for JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if PRESETS[config.preset].body != "form" or content_type not in FORM_TYPES:
        return None
    if is_activation_ping(config, Inbound(body, {}, {})):
        return None
    return await read_fields(request, body)


def _handle(
    app: App,
    config: SourceConfig,
    secrets: tuple[str, ...],
    inbound: Inbound,
    fields: dict[str, Any] | None,
    clock: Callable[[], datetime],
    kick: Callable[[], None],
) -> JSONResponse:
    now = clock()
    try:
        if not is_activation_ping(config, inbound):
            check_authentic(config, inbound, secrets=secrets, now=now)
        verdict = read_delivery(config, inbound, fields)
    except Unauthorized as exc:
        log.warning("source %s: refused (401): %s", config.name, exc)
        return _answer(401, error=str(exc))
    except BodyError as exc:
        return _answer(400, error=str(exc))
    outcome = take(app, verdict, now=now)
    if outcome is None:
        return _answer(200, status="ignored", reason=verdict.reason)
    if outcome is SubscribeOutcome.DUPLICATE:
        return _answer(200, status="duplicate", reason="this event id was already acted on")
    background = BackgroundTask(kick) if outcome is SubscribeOutcome.CONFIRMATION_QUEUED else None
    return JSONResponse(
        {"status": "accepted", "opt_in": "single" if verdict.single_opt_in else "double"},
        status_code=202,
        background=background,
    )


def _answer(code: int, **body: str) -> JSONResponse:
    return JSONResponse(body, status_code=code)
