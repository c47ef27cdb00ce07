"""The ASGI app: routes are thin; the work happens in ``newsletter.subscriptions``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from newsletter import __version__
from newsletter.app import App
from newsletter.client_ip import client_ip
from newsletter.compose import DELIVERY_PARAM, read_delivery_param
from newsletter.confirmations import deliver_confirmations
from newsletter.db_health import database_problem, database_writable
from newsletter.dispatch import sending_fingerprint
from newsletter.errors import InvalidEmailError, TokenError, TokenExpiredError
from newsletter.group_commit import GroupCommit
from newsletter.ledger import worker_name
from newsletter.send_backoff import backoff_until
from newsletter.sending_halt import halt_reason
from newsletter.subscribe_batch import subscribe_job
from newsletter.subscriptions import (
    SubscribeOutcome,
    SubscribeRequest,
    confirm,
    pending_for_confirm_token,
    subscriber_for_unsubscribe_token,
    unsubscribe_by_token,
)
from newsletter.web.body import read_body, read_fields
from newsletter.web.form_input import BadRequest, check_redirect, check_signature, read_form
from newsletter.web.openapi import SUBSCRIBE_BODY, TOKEN_FORM_BODY
from newsletter.web.pages import page
from newsletter.web.pump import Pump
from newsletter.web.rate_limit import MovingWindow, read_limits

if TYPE_CHECKING:
    from newsletter.web.webhooks import EventWakeups

log = logging.getLogger(__name__)

CONFIRMATION_BATCH = 4  # confirmations per claim while requests are answered (see below)
IDLE_CONFIRMATION_BATCH = 32  # ... and while none is: a burst's backlog drains in fewer claims

RETRY_AFTER_SECONDS = "30"  # on every 503: the database is in trouble, ask again soon
# Test sends (``campaign test``) carry ``/unsubscribe/test-send`` instead of a real token.
TEST_SEND_PATH = "/unsubscribe/test-send"
TEST_SEND_TITLE = "This was a test send"
TEST_SEND_MESSAGE = (
    "This email was a test send to a seed address, not a subscription: there is nothing "
    "to unsubscribe from. Real subscribers get their own unsubscribe link."
)
THANKS = "Thanks! Check your inbox: we sent you a link to confirm your subscription."

Clock = Callable[[], datetime]
# ``?d=`` on unsubscribe links: the email the link was in. Declared as a free string so a
# bad value is ignored (the unsubscribe still happens) instead of answered with a 422.
DeliveryParam = Annotated[
    str | None,
    Query(
        description="The delivery (email) the link came from; ignored unless it is one "
        "of this subscriber's."
    ),
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Closable(Protocol):
    def close(self) -> None: ...


@asynccontextmanager
async def _lifespan_closing(pumps: list[_Closable], writer: GroupCommit) -> AsyncIterator[None]:
    try:
        yield
    finally:
        writer.close()
        for pump in pumps:
            pump.close()


def _closing(pumps: list[_Closable], writer: GroupCommit) -> Callable[[Any], Any]:
    """Lifespan: on shutdown, finish the queued writes, then stop the pumps' threads."""
    return lambda _app: _lifespan_closing(pumps, writer)


def wants_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return "json" in content_type or ("application/json" in accept and "text/html" not in accept)


def create_web_app(
    app: App,
    *,
    clock: Clock = _utcnow,
    wake_sender: Callable[[], None] | None = None,
    wake_events: EventWakeups | None = None,
    background_problem: Callable[[], str | None] = lambda: None,
    monotonic: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the web surface over one ``App``; ``clock`` lets tests choose the time, and
    ``monotonic`` (seconds) the time of the rate limits.

    ``wake_sender``: confirmations are sent by another process (``newsletter serve``
    starts one beside uvicorn), woken by this call, which never blocks, after each commit
    that queued one; the request path then only writes. Without it a thread of this
    process sends them (``Pump``), and each answer's background task waits for its email,
    so a test client sees it sent when the call returns. ``wake_events`` likewise for the
    SendGrid event inbox: that process drains it, told when each webhook body is
    committed and when webhook requests are being answered (``RemoteDrain``); without it
    a thread of this one drains (``EventDrain``). ``background_problem``: why that
    process is not running right now (``/healthz`` answers ``degraded`` with it)."""
    web = FastAPI(title="newsletter", version=__version__, docs_url=None, redoc_url=None)
    settings = app.settings
    web.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.origins),
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Newsletter-Signature"],
    )
    trusted = settings.trusted_networks

    def peer_ip(request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_ip(peer, request.headers.getlist("x-forwarded-for"), trusted)

    per_ip = MovingWindow(read_limits(settings.subscribe_rate_limit))

    def error(request: Request, status: int, message: str) -> Response:
        if wants_json(request):
            response: Response = JSONResponse({"error": message}, status_code=status)
        else:
            response = page("Something went wrong", message, status=status)
        if status == 503:
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response

    @web.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> Response:
        return error(request, exc.status, exc.message)

    @web.exception_handler(InvalidEmailError)
    async def _bad_email(request: Request, exc: InvalidEmailError) -> Response:
        return error(request, 400, f"That email address does not look right: {exc.reason}")

    @web.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> Response:
        log.warning("write conflict, answered 503 so the caller retries: %s", exc.orig)
        return error(request, 503, "Please try again in a moment.")

    @web.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable: %s", exc.orig)
        return error(request, 503, "The service is briefly unavailable; please try again.")

    # A read-only database (a standby after fail-over, a read-only file or role), a
    # broken connection or an exhausted pool: the database is in trouble, not the input.
    @web.exception_handler(DBAPIError)
    @web.exception_handler(PoolTimeoutError)
    async def _db_trouble(request: Request, exc: Exception) -> Response:
        log.error("database cannot take writes or is unreachable: %s", database_problem(exc))
        return error(request, 503, "The service is briefly unavailable; please try again.")

    def deliver_here(pause: Callable[[], None]) -> None:
        """The pump's pass: every confirmation that is due, in batches, deferring to
        requests between them (a claim and each chunk's ``sending`` mark take SQLite's
        writer for a time that grows with the batch: small batches while requests are
        answered keep subscribe's commits from waiting long; larger ones when none is, so
        the backlog of a burst drains sooner). SQLite: each transaction takes its turn with
        subscribe's writer."""
        deliver_confirmations(
            app,
            clock=clock,
            batch=lambda: CONFIRMATION_BATCH if in_flight[0] else IDLE_CONFIRMATION_BATCH,
            pause=pause,
            worker=worker_name("web"),
        )

    in_flight = [0]  # subscribe requests being answered: the pump defers to them
    pump = Pump(deliver_here, busy=lambda: in_flight[0] > 0)
    writer = GroupCommit(app.sessions, name="subscribe-writer")
    from newsletter.web.webhooks import EventDrain, RemoteDrain, sendgrid_webhook_router

    # Applies the SendGrid event inbox here, unless another process does.
    events = EventDrain(app, clock=clock) if wake_events is None else RemoteDrain(wake_events)
    closing: list[_Closable] = [pump, events] if isinstance(events, EventDrain) else [pump]
    web.router.lifespan_context = _closing(closing, writer)

    @web.post(
        "/subscribe",
        status_code=202,
        openapi_extra=SUBSCRIBE_BODY,
        responses={
            202: {"description": "Accepted (JSON callers)"},
            303: {"description": "Redirect to the allowed `redirect` URL"},
            400: {"description": "Missing or malformed field"},
            403: {"description": "Bad signature"},
            413: {"description": "Body too large"},
            415: {"description": "Unsupported content type"},
            429: {"description": "Too many requests"},
        },
    )
    async def subscribe_route(request: Request) -> Response:
        """The form webhook: creates or refreshes a pending subscriber."""
        in_flight[0] += 1
        try:
            return await _subscribe(request)
        finally:
            in_flight[0] -= 1

    async def _subscribe(request: Request) -> Response:
        ip = peer_ip(request)
        if not per_ip.hit(ip, now=monotonic()):
            raise BadRequest(429, "Too many requests from your address; try again in a minute.")
        body = await read_body(request, settings.max_body_bytes)
        check_signature(body, request.headers.get("x-newsletter-signature"), settings.form_secret)
        form = read_form(await read_fields(request, body), honeypot_field=settings.honeypot_field)
        redirect = check_redirect(form.redirect, settings.origins) if form.redirect else None
        background = None
        if not form.honeypot_filled:
            wanted = SubscribeRequest(
                email=form.email,
                first_name=form.first_name,
                timezone=form.timezone,
                tags=form.tags,
                source=form.source or request.headers.get("referer"),
                ip=ip,
                user_agent=request.headers.get("user-agent"),
            )
            job = subscribe_job(app, wanted, now=clock())  # a bad address: 400, no write
            # Group commit: answered only once the batch holding this write is committed.
            outcome = await writer.submit(job)
            log.info("subscribe outcome=%s ip=%s", outcome.value, ip)
            if outcome is SubscribeOutcome.CONFIRMATION_QUEUED and wake_sender is not None:
                wake_sender()  # the sender process builds and sends it
            elif outcome is SubscribeOutcome.CONFIRMATION_QUEUED:
                # Sent by the pump's thread; the background task only waits for it, so
                # the email is out by the time the ASGI cycle ends (tests rely on it).
                background = BackgroundTask(pump.wait, pump.signal())
        if wants_json(request):
            return JSONResponse(
                {"status": "accepted", "message": THANKS}, status_code=202, background=background
            )
        if redirect:
            return RedirectResponse(redirect, status_code=303, background=background)
        response = page("Almost there", THANKS)
        response.background = background
        return response

    @web.get("/confirm/{token}", response_class=Response)
    def confirm_page(token: str, request: Request) -> Response:
        """Shows a Confirm button; changes nothing (mail scanners follow links)."""
        try:
            pending_for_confirm_token(app, token, now=clock())
        except TokenExpiredError as exc:
            return page("This link has expired", str(exc), status=410, ask_again=True)
        except TokenError as exc:
            return page("This link is not valid", str(exc), status=400, ask_again=True)
        return page(
            "Confirm your subscription",
            "One click and you are in.",
            action=str(request.url.path),
            button="Confirm",
        )

    @web.post("/confirm/{token}", response_class=Response, openapi_extra=TOKEN_FORM_BODY)
    def confirm_route(token: str, request: Request) -> Response:
        """Activates the subscriber and enrolls them in ``on_confirm`` sequences."""
        try:
            confirm(app, token, ip=peer_ip(request), now=clock())
        except TokenExpiredError as exc:
            return page("This link has expired", str(exc), status=410, ask_again=True)
        except TokenError as exc:
            return page("This link is not valid", str(exc), status=400, ask_again=True)
        return page("You are subscribed", "Thank you! Your first email is on its way.")

    @web.get(TEST_SEND_PATH, response_class=Response)
    @web.post(TEST_SEND_PATH, response_class=Response)
    def test_send_unsubscribe() -> Response:
        """Where the unsubscribe link of a test send (``campaign test``) leads: nobody to
        unsubscribe, so a page that says so (the one-click POST gets the same 200)."""
        return page(TEST_SEND_TITLE, TEST_SEND_MESSAGE)

    @web.get("/unsubscribe/{token}", response_class=Response)
    def unsubscribe_page(token: str, request: Request, d: DeliveryParam = None) -> Response:
        """Shows an Unsubscribe button; changes nothing."""
        try:
            subscriber_for_unsubscribe_token(app, token)
        except TokenError as exc:
            return page("This link is not valid", str(exc), status=400)
        delivery_id = read_delivery_param(d)
        action = str(request.url.path)
        if delivery_id is not None:  # the POST carries it on; never echo the raw value
            action += f"?{DELIVERY_PARAM}={delivery_id}"
        from newsletter.web.preferences import unsubscribe_with_preferences

        with_choices = unsubscribe_with_preferences(app, token, action=action)
        if with_choices is not None:  # the preference centre above the Unsubscribe button
            return with_choices
        return page(
            "Unsubscribe",
            "Click the button and you will get no more emails from us.",
            action=action,
            button="Unsubscribe",
        )

    @web.post("/unsubscribe/{token}", response_class=Response, openapi_extra=TOKEN_FORM_BODY)
    async def unsubscribe_route(token: str, request: Request, d: DeliveryParam = None) -> Response:
        """Unsubscribes at once; also the RFC 8058 one-click target (200, no redirect)."""
        await read_body(request, 16 * 1024)
        try:
            await run_in_threadpool(
                unsubscribe_by_token,
                app,
                token,
                ip=peer_ip(request),
                now=clock(),
                delivery_id=read_delivery_param(d),
            )
        except TokenError as exc:
            return error(request, 400, str(exc))
        if wants_json(request):
            return JSONResponse({"status": "unsubscribed"})
        return page("You are unsubscribed", "You will get no more emails from us.")

    @web.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness, database reachability and writability; ``degraded`` while sending is
        halted."""
        body: dict[str, Any] = {"status": "ok", "database": "ok", "sending": "ok"}
        try:
            with app.sessions() as session:
                session.execute(text("SELECT 1"))
                reason = halt_reason(session, fingerprint=sending_fingerprint(app))
                backoff = backoff_until(session, now=clock())
        except SQLAlchemyError:
            return JSONResponse(
                {"status": "down", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        problem = database_writable(app.sessions)
        if problem is not None:
            log.error("healthz: the database cannot be written: %s", problem)
            return JSONResponse(
                {"status": "down", "database": "read-only", "reason": problem},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        down = background_problem()
        if down is not None:
            body.update(status="degraded", background=down)
        if reason is not None:
            body.update(status="degraded", sending="halted", reason=reason)
        elif backoff is not None:
            until, why = backoff
            body.update(sending="backing off", until=until.isoformat(), reason=why)
        return JSONResponse(body)

    web.include_router(sendgrid_webhook_router(app, clock=clock, events=events))
    from newsletter.web.tracking import tracking_router

    web.include_router(tracking_router(app, clock=clock))
    from newsletter.web.keep import keep_router

    web.include_router(keep_router(app, clock=clock))
    from newsletter.web.sources import sources_router

    web.include_router(
        sources_router(app, clock=clock, kick=wake_sender or pump.kick, monotonic=monotonic)
    )
    from newsletter.web.preferences import preferences_router

    web.include_router(preferences_router(app, clock=clock))
    from newsletter.web.api import mount_api

    mount_api(web, app, clock=clock, monotonic=monotonic)
    return web
