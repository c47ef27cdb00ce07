"""``GET /api/v1/sequences``, ``/campaigns`` and ``/stats`` (read scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from newsletter.campaigns.views import list_campaigns
from newsletter.content.model import Sequence
from newsletter.stats import numbered_steps, stats_report
from newsletter.web.api.context import ApiContext
from newsletter.web.api.errors import ApiError, error_responses
from newsletter.web.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor


def _sequence(seq: Sequence) -> dict[str, Any]:
    triggers = seq.triggers
    return {
        "name": seq.name,
        "description": seq.description,
        "enroll": {
            "on_confirm": triggers.on_confirm or seq.enroll == "on_confirm",
            "on_tag": list(triggers.on_tags),
            "on_event": list(triggers.on_events),
        },
        "exit": {"on_tag": list(triggers.exit_tags), "on_event": list(triggers.exit_events)},
        "reenroll": triggers.reenroll,
        "steps": [
            {"send": step.item_id, "after_seconds": int(step.after.total_seconds())}
            for step in seq.steps
        ],
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def catalog_router(ctx: ApiContext) -> APIRouter:
    router = ctx.router(tags=["catalog"])
    app = ctx.app

    @router.get("/sequences", dependencies=[Depends(ctx.read)], responses=error_responses())
    async def sequences() -> dict[str, Any]:
        """Every sequence with its triggers and steps (a short list: one page)."""
        return {"data": [_sequence(s) for s in app.library.sequences()], "next_cursor": None}

    @router.get("/campaigns", dependencies=[Depends(ctx.read)], responses=error_responses(400, 422))
    async def campaigns(
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Campaigns in creation order with state, schedule, audience and counts."""
        after = decode_cursor("campaigns", cursor)
        views = await run_in_threadpool(list_campaigns, app)
        ordered = sorted(views, key=lambda v: (v.created_at or datetime.min, v.name))
        page = ordered[after : after + limit]
        more = after + limit < len(ordered)
        return {
            "data": [
                {
                    "name": v.name,
                    "item": v.item_id,
                    "state": v.state,
                    "segment": v.segment.describe(),
                    "scheduled_at": _iso(v.scheduled_at),
                    "audience": v.audience,
                    "counts": v.counts,
                }
                for v in page
            ],
            "next_cursor": encode_cursor("campaigns", after + limit) if more else None,
        }

    @router.get("/stats", dependencies=[Depends(ctx.read)], responses=error_responses(400, 422))
    async def stats(
        since: Annotated[str | None, Query(max_length=40, description="ISO-8601")] = None,
    ) -> dict[str, Any]:
        """Per sequence step and campaign: sent, delivered, opened, clicked, ..."""
        start = _since(since)

        def report() -> dict[str, Any]:
            with app.sessions() as session:
                found = stats_report(session, since=start)
            return {
                "since": _iso(found.since),
                "sequences": numbered_steps(found.sequences),
                "campaigns": found.campaigns,
            }

        return await run_in_threadpool(report)

    return router


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    from datetime import UTC

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "invalid_since", f"since={text[:40]!r} is not ISO-8601 (e.g. 2026-12-01)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
