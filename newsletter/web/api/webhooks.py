"""``/api/v1/webhooks`` (write scope): the ``newsletter webhook`` commands over HTTP.

Thin routes over ``newsletter.webhooks.service``: add (the secret is in that answer only),
list, remove, enable, test (a ``ping``), deliveries, retry and secret rotation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from newsletter.web.api.context import ApiContext
from newsletter.web.api.errors import error_responses
from newsletter.webhooks import service
from newsletter.webhooks.service import DeliveryView, WebhookView

WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL of the receiver")
    events: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=50, description="event types, or ['*'] for every event"
    )
    description: str | None = Field(default=None, max_length=500)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _webhook(view: WebhookView) -> dict[str, Any]:
    return {
        "id": view.id,
        "url": view.url,
        "description": view.description,
        "events": list(view.events),
        "enabled": view.enabled,
        "disabled_reason": view.disabled_reason,
        "pending": view.pending,
        "failed": view.failed,
        "previous_secret_valid_until": _iso(view.previous_secret_valid_until),
        "created_at": _iso(view.created_at),
    }


def _delivery(view: DeliveryView) -> dict[str, Any]:
    return {
        "id": view.id,
        "webhook_id": view.webhook_id,
        "event_id": view.event_id,
        "type": view.type,
        "status": view.status,
        "attempts": view.attempts,
        "last_status_code": view.last_status_code,
        "last_error": view.last_error,
        "next_attempt_at": _iso(view.next_attempt_at),
        "delivered_at": _iso(view.delivered_at),
        "created_at": _iso(view.created_at),
    }


def webhooks_router(ctx: ApiContext) -> APIRouter:
    router = ctx.router(prefix="/webhooks", tags=["webhooks"], dependencies=[Depends(ctx.write)])
    app = ctx.app

    @router.post("", status_code=201, responses=error_responses(400, 403, 422))
    async def add(body: WebhookIn) -> dict[str, Any]:
        """Add a receiver; the answer carries its signing secret, shown this once."""
        created = await run_in_threadpool(
            lambda: service.add_webhook(
                app, body.url, list(body.events), description=body.description, now=ctx.clock()
            )
        )
        return {"webhook": _webhook(created.webhook), "secret": created.secret}

    @router.get("", responses=error_responses(403))
    async def list_all() -> dict[str, Any]:
        """Every receiver with its state and pending/failed counts (one page)."""
        views = await run_in_threadpool(lambda: service.list_webhooks(app, now=ctx.clock()))
        return {"data": [_webhook(v) for v in views], "next_cursor": None}

    @router.delete("/{webhook_id}", responses=error_responses(403, 404, 422))
    async def remove(webhook_id: WebhookId) -> dict[str, Any]:
        """Remove a receiver and its undelivered events."""
        view = await run_in_threadpool(
            lambda: service.remove_webhook(app, webhook_id, now=ctx.clock())
        )
        return {"webhook": _webhook(view)}

    @router.post("/{webhook_id}/enable", responses=error_responses(403, 404, 422))
    async def enable(webhook_id: WebhookId) -> dict[str, Any]:
        """Enable a receiver that was disabled after failing for the retry period."""
        view = await run_in_threadpool(
            lambda: service.enable_webhook(app, webhook_id, now=ctx.clock())
        )
        return {"webhook": _webhook(view)}

    @router.post("/{webhook_id}/test", responses=error_responses(403, 404, 422))
    async def test(webhook_id: WebhookId) -> dict[str, Any]:
        """Send a signed ``ping`` now and report the receiver's answer."""
        result = await run_in_threadpool(
            lambda: service.ping_webhook(app, webhook_id, now=ctx.clock())
        )
        return {"ok": result.ok, "delivery": _delivery(result.delivery)}

    @router.post("/{webhook_id}/rotate-secret", responses=error_responses(403, 404, 422))
    async def rotate(webhook_id: WebhookId) -> dict[str, Any]:
        """A new secret (shown this once); the old one keeps signing for 24 hours."""
        created = await run_in_threadpool(
            lambda: service.rotate_secret(app, webhook_id, now=ctx.clock())
        )
        return {"webhook": _webhook(created.webhook), "secret": created.secret}

    @router.get("/deliveries", responses=error_responses(403, 404, 422))
    async def deliveries(
        webhook_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """The newest deliveries, of one receiver and/or one status."""
        rows = await run_in_threadpool(
            lambda: service.list_deliveries(app, webhook_id, status=status, limit=limit)
        )
        return {"data": [_delivery(r) for r in rows], "next_cursor": None}

    @router.post("/deliveries/{delivery_id}/retry", responses=error_responses(403, 404, 422))
    async def retry(delivery_id: WebhookId) -> dict[str, Any]:
        """Send a failed delivery again at the next ``webhooks`` run."""
        view = await run_in_threadpool(
            lambda: service.retry_delivery(app, delivery_id, now=ctx.clock())
        )
        return {"delivery": _delivery(view)}

    return router
