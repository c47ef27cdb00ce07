"""``/api/v1/subscribers``: list, show, create-or-update, patch, delete, tags."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from newsletter.campaigns.audience import has_any_tag
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.subscriber_updates import (
    Upsert,
    change_tags,
    get_profile,
    patch_subscriber,
    remove_subscriber,
    upsert_subscriber,
)
from newsletter.subscribers import summary
from newsletter.web.api.context import ApiContext
from newsletter.web.api.errors import error_responses
from newsletter.web.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor

Scalar = str | int | float | bool
Email = Annotated[str, Path(max_length=320, description="The subscriber's address")]


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(default=None, max_length=500, description="Where they agreed")
    text: str | None = Field(default=None, max_length=2000, description="What they agreed to")


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=20)
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    consent: Consent | None = None
    confirmed: StrictBool = False


class SubscriberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Scalar | None] | None = Field(
        default=None, description="Merged into the stored fields; null removes a field"
    )


class TagChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=20)
    remove: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100)


def subscribers_router(ctx: ApiContext) -> APIRouter:
    router = ctx.router(prefix="/subscribers", tags=["subscribers"])
    app = ctx.app

    @router.get("", dependencies=[Depends(ctx.read)], responses=error_responses(400, 422))
    async def list_subscribers(
        status: Annotated[SubscriberStatus | None, Query()] = None,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Subscribers in id order, ``limit`` at a time; pass ``next_cursor`` on."""
        after = decode_cursor("subscribers", cursor)

        def page() -> dict[str, Any]:
            with app.sessions() as session:
                statement = select(Subscriber).where(Subscriber.id > after)
                if status is not None:
                    statement = statement.where(Subscriber.status == status.value)
                if tag:
                    dialect = session.get_bind().dialect.name
                    statement = statement.where(has_any_tag(dialect, (tag.strip().lower(),)))
                rows = list(session.scalars(statement.order_by(Subscriber.id).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            return {
                "data": [{**summary(s), "attributes": dict(s.attributes or {})} for s in rows],
                "next_cursor": encode_cursor("subscribers", rows[-1].id) if more else None,
            }

        return await run_in_threadpool(page)

    @router.get("/{email}", dependencies=[Depends(ctx.read)], responses=error_responses(400, 404))
    async def show_subscriber(
        email: Email,
    ) -> dict[str, Any]:
        """One subscriber: profile, custom fields, enrollments."""
        return {"subscriber": await run_in_threadpool(get_profile, app, email)}

    @router.post(
        "",
        dependencies=[Depends(ctx.write)],
        status_code=200,
        responses=error_responses(400, 403, 409, 422),
    )
    async def upsert(
        body: SubscriberIn,
        request: Request,
    ) -> JSONResponse:
        """Create (201) or update (200) by email. Without ``confirmed: true`` a new
        address gets the double opt-in email; with it ``consent.source`` is required."""
        consent = body.consent or Consent()
        result = await run_in_threadpool(
            upsert_subscriber,
            app,
            Upsert(
                email=body.email,
                first_name=body.first_name,
                timezone=body.timezone,
                tags=tuple(body.tags),
                attributes=body.attributes,
                confirmed=body.confirmed,
                consent_source=consent.source,
                consent_text=consent.text,
                ip=request.client.host if request.client else None,
            ),
            now=ctx.clock(),
        )
        return JSONResponse(
            {
                "subscriber": result.profile,
                "outcome": result.outcome,
                "enrolled": result.changes.enrolled,
                "exited": result.changes.exited,
            },
            status_code=201 if result.created else 200,
        )

    @router.patch(
        "/{email}", dependencies=[Depends(ctx.write)], responses=error_responses(400, 403, 404, 422)
    )
    async def patch(
        email: Email,
        body: SubscriberPatch,
    ) -> dict[str, Any]:
        """Change the name or time zone; merge attributes (null removes one)."""
        found = await run_in_threadpool(
            lambda: patch_subscriber(
                app,
                email,
                first_name=body.first_name,
                timezone=body.timezone,
                changes=body.attributes,
                now=ctx.clock(),
            )
        )
        return {"subscriber": found}

    @router.delete(
        "/{email}", dependencies=[Depends(ctx.write)], responses=error_responses(400, 403, 404)
    )
    async def delete(
        email: Email,
        forget: Annotated[bool, Query(description="Erase as `subscribers forget` does")] = False,
    ) -> dict[str, Any]:
        """Unsubscribe at once, or with ``?forget=true`` erase the personal data."""
        status = await run_in_threadpool(
            lambda: remove_subscriber(app, email, forget_data=forget, now=ctx.clock())
        )
        return {"email": email.strip().lower(), "status": status}

    @router.post(
        "/{email}/tags",
        dependencies=[Depends(ctx.write)],
        responses=error_responses(400, 403, 404, 422),
    )
    async def tags(
        email: Email,
        body: TagChange,
    ) -> dict[str, Any]:
        """Add and remove tags; added tags fire ``on_tag`` enroll and exit triggers."""
        found, changes = await run_in_threadpool(
            lambda: change_tags(app, email, add=body.add, remove=body.remove, now=ctx.clock())
        )
        return {"subscriber": found, "enrolled": changes.enrolled, "exited": changes.exited}

    return router
