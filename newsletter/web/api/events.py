"""``POST /api/v1/events``: a custom event (``purchase``) that may start or end sequences."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from newsletter.automation.use_cases import record_event
from newsletter.web.api.context import ApiContext
from newsletter.web.api.errors import error_responses

Scalar = str | int | float | bool


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    name: str = Field(max_length=64, description="e.g. purchase")
    properties: dict[str, Scalar] = Field(default_factory=dict)
    id: str = Field(
        min_length=1, max_length=200, description="Idempotency key, e.g. the order number"
    )


def events_router(ctx: ApiContext) -> APIRouter:
    router = ctx.router(tags=["events"])

    @router.post(
        "/events",
        dependencies=[Depends(ctx.write)],
        responses=error_responses(400, 403, 404, 409, 422),
    )
    async def post_event(
        body: EventIn,
    ) -> dict[str, Any]:
        """Record an event once per ``id``; sequences with ``exit: on_event`` end and
        those with ``enroll: on_event`` start. The same ``id`` again changes nothing."""
        result = await run_in_threadpool(
            lambda: record_event(
                ctx.app,
                email=body.email,
                name=body.name,
                properties=body.properties,
                event_id=body.id,
                now=ctx.clock(),
            )
        )
        return {
            "event": {"id": result.id, "name": result.name, "email": result.email},
            "duplicate": result.duplicate,
            "enrolled": result.changes.enrolled,
            "exited": result.changes.exited,
        }

    return router
