"""What every API router is built from: the ``App``, the clock, the auth dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter

from newsletter.app import App
from newsletter.models import ApiKeyScope
from newsletter.web.api.auth import ApiAuth
from newsletter.web.api.routing import capped_route


@dataclass(frozen=True)
class ApiContext:
    app: App
    clock: Callable[[], datetime]
    auth: ApiAuth

    @property
    def read(self) -> Callable[..., object]:
        """Dependency: any valid key (read or write scope)."""
        return self.auth.require(ApiKeyScope.READ)

    @property
    def write(self) -> Callable[..., object]:
        """Dependency: a valid key with the write scope."""
        return self.auth.require(ApiKeyScope.WRITE)

    def router(self, **kwargs: Any) -> APIRouter:
        """An ``APIRouter`` whose routes answer errors in the API's envelope and refuse a
        body over ``NEWSLETTER_MAX_BODY_BYTES`` while it is read (413)."""
        return APIRouter(route_class=capped_route(self.app.settings.max_body_bytes), **kwargs)
